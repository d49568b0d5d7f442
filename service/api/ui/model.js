// The served model's card, from GET /v1/models, in readable form. Sections this page does not know
// (a newer card's additions) are still shown, under "More from the model card".

import { el, facts, table } from "./dom.js";
import { count, decimal, figure, label, MISSING, percent, when } from "./format.js";
import { perSourceTables, recordTable, renderValue, sourceQualifier } from "./generic.js";

const SHOWN = new Set([
  "name",
  "version",
  "architecture",
  "created_at",
  "class_names",
  "pixel_contract",
  "training_data",
  "decision_threshold",
  "calibration",
  "out_of_distribution",
  "validation_metrics",
  "majority_baseline",
  "onnx_sha256",
  "execution_provider",
  "provider_fallback",
  "intended_population",
]);

function section(title, ...content) {
  const id = `model-${title.toLowerCase().replaceAll(/[^a-z]+/g, "-")}`;
  return el("section", { class: "card", "aria-labelledby": id }, el("h3", { id, text: title }), content);
}

function identity(card) {
  const provider = card.provider_fallback
    ? `${card.execution_provider} (wanted ${card.provider_fallback.requested}: ${card.provider_fallback.reason})`
    : card.execution_provider;
  return section(
    "Identity",
    facts([
      ["Model", `${card.name} ${card.version}`],
      ["Architecture", card.architecture],
      ["Created", when(card.created_at)],
      ["Classes", card.class_names.join(", ")],
      ["Input", `${card.pixel_contract.height} × ${card.pixel_contract.width} grayscale, ${card.pixel_contract.preprocessing}`],
      ["Runs on", provider],
      ["ONNX SHA-256", el("code", { class: "wrap", text: card.onnx_sha256 })],
    ]),
  );
}

function population(card) {
  const data = card.training_data;
  if (!data) {
    return section("Population", el("p", { class: "muted", text: "The card does not describe its training data." }));
  }
  const classes = [...new Set(Object.values(data.splits).flatMap((s) => Object.keys(s.per_class)))];
  const rows = Object.entries(data.splits).map(([name, split]) => [
    label(name),
    count(split.images),
    count(split.patients),
    ...classes.map((c) => count(split.per_class[c] ?? 0)),
  ]);
  const extra = Object.entries(data).filter(([k]) => !["source", "split_method", "seed", "splits"].includes(k));
  return section(
    "Population and sources",
    facts([
      ...(card.intended_population ? [["Intended for", card.intended_population]] : []),
      ["Source", data.source],
      ["Split", `${data.split_method} (seed ${data.seed})`],
      ...extra.map(([k, v]) => [label(k), renderValue(v, label(k))]),
    ]),
    table("Films per split", ["Split", "Films", "Patients", ...classes], rows),
  );
}

function metrics(card) {
  const names = [...new Set([...Object.keys(card.validation_metrics), ...Object.keys(card.majority_baseline)])];
  const rows = names.map((name) => [
    label(name),
    figure(card.validation_metrics[name]),
    figure(card.majority_baseline[name]),
  ]);
  return section(
    "Validation metrics beside the majority-class baseline",
    el("p", {
      class: "muted small",
      text: "The baseline always answers the most frequent class: a useful model beats it clearly. n/a = undefined on that split.",
    }),
    table("Validation metrics", ["Metric", "This model", "Majority baseline"], rows),
  );
}

function calibration(card) {
  const c = card.calibration;
  if (!c) {
    return section("Calibration", el("p", { text: "None: the probabilities are the raw softmax." }));
  }
  return section(
    "Calibration",
    facts([
      ["Method", `${c.method}, temperature ${decimal(c.temperature)}`],
      ["Expected calibration error", `${decimal(c.validation_ece_before)} before → ${decimal(c.validation_ece_after)} after`],
      [
        "Cross-entropy",
        `${decimal(c.validation_cross_entropy_before)} before → ${decimal(c.validation_cross_entropy_after)} after`,
      ],
    ]),
  );
}

function operatingPoint(card) {
  const t = card.decision_threshold;
  if (!t) {
    return section("Operating point", el("p", { text: "None: the most probable class is reported." }));
  }
  const known = ["positive_class", "value", "method", "validation_sensitivity", "validation_specificity", "target_sensitivity"];
  const sources = perSourceTables(t);
  const other = Object.entries(t).filter(
    ([k]) => !known.includes(k) && !sources.some(([name]) => name === k),
  );
  return section(
    "Operating point",
    facts([
      ["Urgent when", `p(${t.positive_class}) ≥ ${decimal(t.value, 4)}`],
      ["Chosen by", t.method],
      ["Target sensitivity", t.target_sensitivity === null || t.target_sensitivity === undefined ? MISSING : percent(t.target_sensitivity)],
      ["Validation sensitivity", percent(t.validation_sensitivity)],
      ["Validation specificity", percent(t.validation_specificity)],
      ...other.map(([k, v]) => [label(k), renderValue(v, label(k))]),
    ]),
    sources.map(([name, rows]) => recordTable(`Each source's validation films at this threshold${sourceQualifier(name)}`, rows)),
  );
}

function ood(card) {
  const o = card.out_of_distribution;
  if (!o) {
    return section("Out-of-distribution gate", el("p", { text: "None: every decodable film is classified." }));
  }
  return section(
    "Out-of-distribution gate",
    facts([
      ["Method", o.method],
      ["Refused above", decimal(o.threshold)],
      ["Set at", `the ${percent(o.validation_quantile)} quantile of validation films`],
      ["Validation films refused", percent(o.validation_rejection_rate)],
    ]),
  );
}

function more(card) {
  const extra = Object.entries(card).filter(([k]) => !SHOWN.has(k));
  if (extra.length === 0) {
    return null;
  }
  return section("More from the model card", facts(extra.map(([k, v]) => [label(k), renderValue(v, label(k))])));
}

export function renderModel(card) {
  return el(
    "div",
    { class: "model-grid", "data-testid": "model-card" },
    identity(card),
    operatingPoint(card),
    metrics(card),
    population(card),
    calibration(card),
    ood(card),
    more(card),
  );
}
