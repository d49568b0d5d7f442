// How numbers from the service and the model card are written on the page.

export const MISSING = "n/a";

export function percent(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${(100 * value).toFixed(digits)}%` : MISSING;
}

export function decimal(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : MISSING;
}

// A figure of unknown kind (from a card section this page does not know): counts stay whole.
export function figure(value) {
  if (typeof value !== "number") {
    return value === null || value === undefined ? MISSING : String(value);
  }
  return Number.isInteger(value) ? value.toLocaleString("en") : decimal(value);
}

export function when(iso) {
  if (typeof iso !== "string" || iso === "") {
    return MISSING;
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString("en-GB", { hour12: false });
}

export function label(key) {
  const text = String(key).replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
