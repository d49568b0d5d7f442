// One analysed film: the film with its Grad-CAM heat map, the probabilities, the triage level with
// what it means for this model, and the out-of-distribution score against its threshold.

import { el, facts } from "./dom.js";
import { decimal, percent } from "./format.js";
import { perSourceTables, recordTable, sourceQualifier } from "./generic.js";
import { sentenceFor } from "./messages.js";

let viewerCount = 0;

// The film with its heat map stacked over it, a toggle and an opacity slider. overlaySrc and
// filmSrc are object URLs; without the bare film (filmSrc null) the blend is all there is.
export function heatMapViewer({ overlaySrc, filmSrc, className }) {
  const id = `viewer-${++viewerCount}`;
  const overlay = el("img", {
    class: "layer heat",
    src: overlaySrc,
    alt: `Grad-CAM heat map for ${className} over the film`,
    "data-testid": "overlay",
  });
  const stack = el("div", { class: "stack" });
  if (filmSrc) {
    stack.append(
      el("img", { class: "layer film", src: filmSrc, alt: "The film, without the heat map", "data-testid": "film" }),
    );
    overlay.classList.add("over");
  }
  stack.append(overlay);

  const toggle = el("input", { type: "checkbox", id: `${id}-toggle`, checked: true });
  const opacity = el("input", { type: "range", id: `${id}-opacity`, min: 0, max: 100, step: 5, value: 100 });
  const shown = el("output", { for: opacity.id, text: "100%" });
  const update = () => {
    overlay.style.opacity = String(opacity.valueAsNumber / 100);
    overlay.hidden = !toggle.checked && Boolean(filmSrc);
    opacity.disabled = !toggle.checked;
    shown.textContent = `${opacity.value}%`;
  };
  toggle.addEventListener("change", update);
  opacity.addEventListener("input", update);
  const controls = filmSrc
    ? el(
        "div",
        { class: "controls" },
        el("label", { class: "check", for: toggle.id }, toggle, " Show heat map"),
        el("label", { for: opacity.id, text: "Heat-map opacity" }),
        opacity,
        shown,
      )
    : null;
  return el(
    "figure",
    { class: "viewer" },
    stack,
    el(
      "figcaption",
      { class: "muted small" },
      `Grad-CAM for ${className}: where the evidence for it lies (red strongest, blue weakest).`,
    ),
    controls,
  );
}

function viewer(gradcam, urls) {
  return heatMapViewer({
    overlaySrc: urls.fromBase64Png(gradcam.png_base64),
    filmSrc: gradcam.film_png_base64 ? urls.fromBase64Png(gradcam.film_png_base64) : null,
    className: gradcam.class_name,
  });
}

function probabilities(prediction) {
  const entries = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
  return el(
    "section",
    { class: "card", "aria-labelledby": "prob-title" },
    el("h3", { id: "prob-title", text: "Class probabilities" }),
    el(
      "ul",
      { class: "bars", "data-testid": "probabilities" },
      entries.map(([name, p]) => {
        const fill = el("span", { class: "bar-fill" });
        fill.style.width = percent(p);
        return el(
          "li",
          { "data-class": name },
          el("span", { class: "bar-name", text: name }),
          el("span", { class: "bar", "aria-hidden": "true" }, fill),
          el("span", { class: "bar-value", text: percent(p) }),
        );
      }),
    ),
  );
}

function operatingPoint(triage) {
  const rule = `Urgent means p(${triage.positive_class}) ≥ ${decimal(triage.threshold, 4)}; routine otherwise.`;
  if (triage.validation_sensitivity === null || triage.validation_specificity === null) {
    return `${rule} This threshold is set by the deployment, so its validation sensitivity and specificity are not known.`;
  }
  return (
    `${rule} On the validation films at this threshold the model flagged ` +
    `${percent(triage.validation_sensitivity)} of ${triage.positive_class} films as urgent (sensitivity) ` +
    `and left ${percent(triage.validation_specificity)} of the others routine (specificity).`
  );
}

function triageCard(prediction, card) {
  const triage = prediction.triage;
  if (!triage) {
    return el(
      "section",
      { class: "card", "aria-labelledby": "triage-title" },
      el("h3", { id: "triage-title", text: "Finding" }),
      el("p", { class: "level", "data-testid": "triage-level", text: prediction.predicted_class }),
      el("p", { text: "This model has no operating point: the most probable class is reported." }),
    );
  }
  const p = prediction.probabilities[triage.positive_class];
  const sources = card ? perSourceTables(card.decision_threshold) : [];
  return el(
    "section",
    { class: `card triage ${triage.level}`, "aria-labelledby": "triage-title" },
    el("h3", { id: "triage-title", text: "Triage" }),
    el("p", { class: `level ${triage.level}`, "data-testid": "triage-level", text: triage.level.toUpperCase() }),
    el("p", {
      "data-testid": "triage-reason",
      text:
        `p(${triage.positive_class}) = ${percent(p)}, ` +
        `${triage.level === "urgent" ? "at or above" : "below"} the operating point ${percent(triage.threshold)}.`,
    }),
    el("p", { class: "muted", "data-testid": "triage-meaning", text: operatingPoint(triage) }),
    sources.map(([name, rows]) => recordTable(`This operating point on each source's validation films${sourceQualifier(name)}`, rows)),
  );
}

// The OOD score against its threshold, in the words both the film view and the worklist use.
export function oodSentence(ood) {
  return (
    `Out-of-distribution score ${decimal(ood.score)}; films above ${decimal(ood.threshold)} are refused. ` +
    (ood.score <= ood.threshold ? "This film passed." : "This film did not pass.")
  );
}

function oodCard(ood) {
  if (!ood) {
    return null;
  }
  const passed = ood.score <= ood.threshold;
  const fill = el("span", { class: `bar-fill ${passed ? "ok" : "bad"}` });
  fill.style.width = `${Math.min(100, (100 * ood.score) / ood.threshold)}%`;
  return el(
    "section",
    { class: "card", "aria-labelledby": "ood-title" },
    el("h3", { id: "ood-title", text: "Is it a chest film like the training films?" }),
    el("p", { "data-testid": "ood", text: oodSentence(ood) }),
    el("span", { class: "bar wide", "aria-hidden": "true" }, fill),
  );
}

export function renderPrediction(prediction, card, urls) {
  const info = prediction.image;
  const details = facts([
    ["Model", `${prediction.model.name} ${prediction.model.version}`],
    ["Film", `${info.source_format.toUpperCase()}, ${info.width} × ${info.height} px`],
    ["Inference", `${decimal(prediction.inference_ms, 1)} ms on ${prediction.execution_provider}`],
    ["Request id", el("code", { text: prediction.request_id })],
  ]);
  return el(
    "div",
    { class: "result", "data-testid": "result" },
    prediction.gradcam
      ? viewer(prediction.gradcam, urls)
      : el("p", { class: "muted", text: "No heat map was returned for this film." }),
    el(
      "div",
      { class: "findings" },
      triageCard(prediction, card),
      probabilities(prediction),
      oodCard(prediction.out_of_distribution),
      el("section", { class: "card" }, el("h3", { text: "Details" }), details),
    ),
  );
}

// A refused film: the reason in words, then the service's own explanation.
export function renderRefusal(error) {
  return el(
    "div",
    { class: "refusal", role: "alert", "data-testid": "refusal" },
    el("h3", { text: "The film was not analysed" }),
    el("p", { class: "reason", "data-testid": "refusal-reason", text: sentenceFor(error.code) }),
    error.detail ? el("p", { class: "muted small", text: `The service said: ${error.detail}` }) : null,
  );
}
