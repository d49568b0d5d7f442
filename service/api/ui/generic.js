// Readable rendering of card sections this page has no dedicated layout for (a newer card may add
// per-source or shift figures): tables where the data is a table, nested lists otherwise.

import { el, facts, table } from "./dom.js";
import { figure, label, MISSING } from "./format.js";

const MAX_DEPTH = 4;

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isScalar(value) {
  return value === null || ["number", "string", "boolean"].includes(typeof value);
}

function isFlatRecord(value) {
  return isPlainObject(value) && Object.values(value).every(isScalar);
}

// A record whose members are scalars or flat records, one level flattened into columns
// ({auc, per_source_auc: {a, b}} -> {auc, "per_source_auc · a", ...}); null for anything deeper.
function flatten(value) {
  if (!isPlainObject(value)) {
    return null;
  }
  const flat = {};
  for (const [key, member] of Object.entries(value)) {
    if (isScalar(member)) {
      flat[key] = member;
    } else if (isFlatRecord(member)) {
      for (const [inner, scalar] of Object.entries(member)) {
        flat[`${key} · ${inner}`] = scalar;
      }
    } else {
      return null;
    }
  }
  return flat;
}

// {row: {column: scalar}} or [{column: scalar}]: a table.
function tableRows(value) {
  const records = Array.isArray(value) ? value : isPlainObject(value) ? Object.values(value) : [];
  if (records.length === 0) {
    return null;
  }
  const flat = records.map(flatten);
  if (flat.some((record) => record === null)) {
    return null;
  }
  const names = Array.isArray(value) ? records.map((_, i) => String(i + 1)) : Object.keys(value);
  return names.map((name, i) => [name, flat[i]]);
}

export function recordTable(caption, rows) {
  const columns = [...new Set(rows.flatMap(([, record]) => Object.keys(record)))];
  return table(
    caption,
    ["", ...columns.map(label)],
    rows.map(([name, record]) => [name, ...columns.map((c) => figure(record[c]))]),
  );
}

export function renderValue(value, caption = "", depth = 0) {
  if (isScalar(value)) {
    return document.createTextNode(figure(value));
  }
  const rows = tableRows(value);
  if (rows !== null) {
    return recordTable(caption, rows);
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return document.createTextNode(MISSING);
    }
    if (value.every(isScalar)) {
      return document.createTextNode(value.map(figure).join(", "));
    }
    return el("ol", {}, value.map((item) => el("li", {}, renderValue(item, caption, depth + 1))));
  }
  if (depth >= MAX_DEPTH) {
    return document.createTextNode("…");
  }
  return facts(Object.entries(value).map(([k, v]) => [label(k), renderValue(v, label(k), depth + 1)]));
}

// "per_source" -> "", "per_source_auc" -> " (AUC)": what a per-source table's caption adds.
export function sourceQualifier(name) {
  const rest = name.replace(/^per_source_?/, "");
  return rest === "" ? "" : ` (${label(rest)})`;
}

// Per-source figures wherever a card keeps them: any member whose name mentions "source" and that
// maps source names to figures. Returns [[name, rows]].
export function perSourceTables(section) {
  if (!isPlainObject(section)) {
    return [];
  }
  const found = [];
  for (const [name, value] of Object.entries(section)) {
    const rows = name.toLowerCase().includes("source") ? tableRows(value) : null;
    if (rows !== null) {
      found.push([name, rows]);
    }
  }
  return found;
}
