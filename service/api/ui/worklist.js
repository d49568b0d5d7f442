// The worklist: triaged studies from GET /v1/studies, urgent first, refreshed while it is in view.
// A deployment without the endpoint (404), or without DICOM intake configured, is told so once and
// not polled again. Shape: {total, limit, offset, studies: [{study_instance_uid, received_at,
// finished_at, triage_level, probability, model_version, delivery_state, instances: [...]}]}.
// Opening a study shows each film's result: the Grad-CAM overlay over the film, fetched by UID
// with the key in a header and shown from object URLs, with its probability, triage level and
// out-of-distribution score, and its SR and SC to save as DICOM.

import { ApiError, getResult, getStudies } from "./api.js";
import { el, facts, table, UrlBag } from "./dom.js";
import { figure, label, MISSING, percent, when } from "./format.js";
import { sentenceFor } from "./messages.js";
import { heatMapViewer, oodSentence } from "./result.js";

export const REFRESH_MS = 15000;

// The first present member among several spellings ("a.b" reads a nested member).
function pick(item, paths) {
  for (const path of paths) {
    const value = path.split(".").reduce((v, key) => (v && typeof v === "object" ? v[key] : undefined), item);
    if (value !== undefined && value !== null) {
      return value;
    }
  }
  return null;
}

const level = (s) => pick(s, ["triage_level", "triage.level", "level"]);
const probability = (s) => pick(s, ["probability", "triage.probability", "positive_probability"]);
const received = (s) => pick(s, ["received_at", "received"]);
const finished = (s) => pick(s, ["finished_at", "triaged_at", "finished"]);
const modelVersion = (s) => pick(s, ["model_version", "model.version"]);
const delivery = (s) => pick(s, ["delivery_state", "delivery.state", "delivery"]);
const studyUid = (s) => pick(s, ["study_instance_uid", "study_uid", "uid"]);

function studiesOf(body) {
  if (Array.isArray(body)) {
    return body;
  }
  const list = body && pick(body, ["studies", "items", "results"]);
  return Array.isArray(list) ? list : [];
}

// The service already ranks (urgent, then untriaged, then routine; newest first within each): a
// stable sort on "urgent or not" keeps its order and only guarantees that urgent comes first.
export function urgentFirst(studies) {
  const rank = (s) => (level(s) === "urgent" ? 0 : 1);
  return [...studies].sort((a, b) => rank(a) - rank(b));
}

const UNAVAILABLE = new Set(["not_found", "pacs_not_configured"]);

function levelBadge(study) {
  const value = level(study);
  return el("span", { class: `badge ${value ?? "none"}`, text: value ? value.toUpperCase() : "PENDING" });
}

// Why a film has no images to show, by its result_state (GET /v1/studies).
const NO_IMAGES = {
  pending: "Not triaged yet: its images appear here once it is (the list refreshes by itself; open the study again).",
  none: "This film was not triaged (see its reason above), so there is no heat map.",
  expired:
    "Its images were deleted from this service after the retention period; the PACS holds its SR and Secondary Capture.",
};

export class Worklist {
  // card: () => the served model's card (or null), for the name of the positive class.
  constructor({ host, updated, refreshButton, detail, onAuthFailure, card = () => null }) {
    this.host = host;
    this.onAuthFailure = onAuthFailure;
    this.updated = updated;
    this.detail = detail;
    this.card = card;
    this.timer = null;
    this.unavailable = false;
    this.urls = new UrlBag(); // the open study's images, revoked when another is opened
    this.opened = 0; // counts openings: images that arrive for a study no longer open are dropped
    refreshButton.addEventListener("click", () => this.load());
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        this.pause();
      } else if (this.active) {
        this.start();
      }
    });
  }

  start() {
    this.active = true;
    this.pause();
    this.load();
    if (!this.unavailable) {
      this.timer = window.setInterval(() => this.load(), REFRESH_MS);
    }
  }

  pause() {
    window.clearInterval(this.timer);
    this.timer = null;
  }

  stop() {
    this.active = false;
    this.pause();
  }

  reset() {
    this.stop();
    this.opened += 1;
    this.urls.revokeAll();
    this.unavailable = false;
    this.host.replaceChildren();
    this.detail.replaceChildren();
    this.updated.textContent = "";
  }

  async load() {
    if (this.unavailable) {
      return;
    }
    try {
      const body = await getStudies();
      this.render(urgentFirst(studiesOf(body)), body && typeof body.total === "number" ? body.total : null);
      this.updated.textContent = `Updated ${new Date().toLocaleTimeString("en-GB", { hour12: false })}; refreshes every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      if (this.onAuthFailure(error)) {
        return;
      }
      if (error.status === 404 || UNAVAILABLE.has(error.code)) {
        this.unavailable = true;
        this.pause();
        this.updated.textContent = "";
        this.host.replaceChildren(
          el("p", { class: "notice", "data-testid": "worklist-message", text: "The worklist is not available on this deployment." }),
          el("p", {
            class: "muted small",
            text: "This service does not list triaged studies (no DICOM intake, or no GET /v1/studies). Films can still be tried one at a time.",
          }),
        );
        return;
      }
      this.host.replaceChildren(
        el("p", { class: "notice", role: "alert", "data-testid": "worklist-message", text: sentenceFor(error.code) }),
      );
    }
  }

  render(studies, total) {
    if (studies.length === 0) {
      this.host.replaceChildren(el("p", { class: "notice", "data-testid": "worklist-message", text: "No triaged studies yet." }));
      return;
    }
    const rows = studies.map((study, i) => [
      el("button", { type: "button", class: "link", onclick: () => this.open(study), text: `Open ${i + 1}` }),
      levelBadge(study),
      percent(probability(study)),
      when(received(study)),
      when(finished(study)),
      figure(modelVersion(study)),
      figure(delivery(study)),
      el("code", { class: "wrap", text: studyUid(study) ?? MISSING }),
    ]);
    const caption = total !== null && total > studies.length
      ? `Triaged studies, urgent first (the first ${studies.length} of ${total})`
      : "Triaged studies, urgent first";
    this.host.replaceChildren(
      table(caption, ["", "Triage", "Probability", "Received", "Finished", "Model", "Delivery", "Study UID"], rows),
    );
  }

  open(study) {
    const opening = ++this.opened;
    this.urls.revokeAll();
    const title = el("h3", { tabindex: "-1", text: "Study" });
    const scalars = Object.entries(study).filter(([, v]) => v === null || typeof v !== "object");
    const instances = Array.isArray(study.instances) ? study.instances : [];
    this.detail.replaceChildren(
      el(
        "section",
        { class: "card", "data-testid": "study-detail" },
        title,
        el("p", {}, levelBadge(study)),
        facts(scalars.map(([k, v]) => [label(k), k.endsWith("_at") ? when(v) : figure(v)])),
        instances.length > 0 ? instanceTable(instances) : null,
        instances.map((instance, i) => this.filmResult(studyUid(study), instance, i + 1, opening)),
      ),
    );
    title.focus();
  }

  // One film of the open study: its images (loaded after the view is drawn) beside its findings.
  filmResult(study, instance, number, opening) {
    const images = el("div", { class: "film-images", "data-testid": "film-images" });
    const available = instance.result_state === "available";
    if (available) {
      images.append(el("p", { class: "muted", role: "status", text: "Loading the images…" }));
      this.loadImages(study, instance, images, opening);
    } else {
      const why = NO_IMAGES[instance.result_state] ?? "This service does not offer this film's images.";
      images.append(el("p", { class: "notice", "data-testid": "film-images-message", text: why }));
    }
    return el(
      "section",
      { class: "film-result", "aria-label": `Film ${number}`, "data-testid": "film-result" },
      el("h4", { text: `Film ${number}` }),
      el(
        "div",
        { class: "result" },
        images,
        el("div", { class: "findings" }, this.filmFindings(instance), available ? this.saveButtons(study, instance, number) : null),
      ),
    );
  }

  filmFindings(instance) {
    // The operating point is the served model's: said only for films that model triaged.
    const card = this.card();
    const sameModel = card && card.name === instance.model_name && card.version === instance.model_version;
    const threshold = sameModel ? card.decision_threshold : null;
    const p = instance.probability;
    const probabilityText = threshold?.positive_class
      ? `p(${threshold.positive_class}) = ${percent(p)}` +
        (typeof threshold.value === "number" ? `; urgent at or above ${percent(threshold.value)}` : "")
      : percent(p);
    const ood =
      typeof instance.ood_score === "number" && typeof instance.ood_threshold === "number"
        ? oodSentence({ score: instance.ood_score, threshold: instance.ood_threshold })
        : "No out-of-distribution score was recorded for this film.";
    return el(
      "div",
      { class: "card" },
      el("p", {}, levelBadge(instance)),
      facts([
        ["Probability", el("span", { "data-testid": "film-probability", text: probabilityText })],
        ["Out of distribution", el("span", { "data-testid": "film-ood", text: ood })],
        ["Model", instance.model_name ? `${instance.model_name} ${instance.model_version ?? ""}`.trim() : MISSING],
        ["SR", el("code", { class: "wrap", text: instance.sr_instance_uid ?? MISSING })],
        ["Secondary Capture", el("code", { class: "wrap", text: instance.sc_instance_uid ?? MISSING })],
        ["Kept here until", keptUntil(instance)],
      ]),
    );
  }

  async loadImages(study, instance, host, opening) {
    const sop = instance.sop_instance_uid;
    try {
      // The bare film lets the heat map be faded; without it the overlay alone is shown.
      const [overlay, film] = await Promise.all([
        getResult(study, sop, "overlay.png"),
        getResult(study, sop, "film.png").catch(() => null),
      ]);
      if (opening !== this.opened) {
        return;
      }
      host.replaceChildren(
        heatMapViewer({
          overlaySrc: this.urls.fromBlob(overlay),
          filmSrc: film ? this.urls.fromBlob(film) : null,
          className: instance.predicted_class ?? "the predicted class",
        }),
      );
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      if (opening !== this.opened || this.onAuthFailure(error)) {
        return;
      }
      host.replaceChildren(
        el("p", { class: "notice", role: "alert", "data-testid": "film-images-message", text: sentenceFor(error.code) }),
        error.detail ? el("p", { class: "muted small", text: `The service said: ${error.detail}` }) : null,
      );
    }
  }

  // The SR and SC as the PACS received them, saved through an object URL (the key stays in a header).
  saveButtons(study, instance, number) {
    const status = el("p", { class: "muted small", role: "status" });
    const save = (name, what) =>
      el("button", {
        type: "button",
        text: `Save the ${what} (DICOM)`,
        onclick: async () => {
          status.textContent = `Fetching the ${what}…`;
          try {
            const url = URL.createObjectURL(await getResult(study, instance.sop_instance_uid, name));
            el("a", { href: url, download: `cxr-triage-film${number}-${name}` }).click();
            window.setTimeout(() => URL.revokeObjectURL(url), 10000);
            status.textContent = `Saved the ${what}.`;
          } catch (error) {
            if (!(error instanceof ApiError)) {
              throw error;
            }
            if (!this.onAuthFailure(error)) {
              status.textContent = sentenceFor(error.code);
            }
          }
        },
      });
    return el(
      "div",
      { class: "card" },
      el("div", { class: "toolbar" }, save("sr.dcm", "SR"), save("sc.dcm", "Secondary Capture")),
      status,
    );
  }
}

function keptUntil(instance) {
  if (instance.result_state === "expired") {
    return "deleted after the retention period";
  }
  if (instance.result_state !== "available") {
    return MISSING;
  }
  return instance.results_expire_at ? when(instance.results_expire_at) : "delivered, then for the retention period";
}

const INSTANCE_COLUMNS = [
  ["SOP instance UID", (i) => el("code", { class: "wrap", text: i.sop_instance_uid ?? MISSING })],
  ["State", (i) => figure(i.state)],
  ["Triage", (i) => levelBadge(i)],
  ["Probability", (i) => percent(i.probability)],
  ["Finished", (i) => when(i.finished_at)],
  ["Delivery", (i) => figure(i.delivery_state)],
  ["Reason", (i) => figure(i.reason ?? i.delivery_error)],
];

function instanceTable(instances) {
  return table(
    "Films of this study",
    INSTANCE_COLUMNS.map(([heading]) => heading),
    instances.map((instance) => INSTANCE_COLUMNS.map(([, cell]) => cell(instance))),
  );
}
