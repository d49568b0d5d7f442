// How numbers from the service and the model card are written on the page.

export const MISSING = "n/a";

export function percent(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${(100 * value).toFixed(digits)}%` : MISSING;
}

export function decimal(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : MISSING;
}

export function count(value) {
  return typeof value === "number" && Number.isFinite(value) ? value.toLocaleString("en") : MISSING;
}

// A figure of unknown kind (a metric, a count): whole numbers above 1 are counts, the rest are
// ratios and scores (JSON cannot tell 1 from 1.0).
export function figure(value) {
  if (typeof value !== "number") {
    return value === null || value === undefined ? MISSING : String(value);
  }
  return Number.isInteger(value) && Math.abs(value) > 1 ? count(value) : decimal(value);
}

export function when(iso) {
  if (typeof iso !== "string" || iso === "") {
    return MISSING;
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString("en-GB", { hour12: false });
}

const ACRONYMS = new Set(["auc", "ece", "f1", "ood", "ppv", "npv", "roc", "uid", "id"]);

export function label(key) {
  const words = String(key)
    .split("_")
    .map((word) => (ACRONYMS.has(word.toLowerCase()) ? word.toUpperCase() : word));
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
