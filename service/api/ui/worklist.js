// The worklist: triaged studies from GET /v1/studies, urgent first, refreshed while it is in view.
// A deployment without the endpoint (404), or without DICOM intake configured, is told so once and
// not polled again. Shape: {total, limit, offset, studies: [{study_instance_uid, received_at,
// finished_at, triage_level, probability, model_version, delivery_state, instances: [...]}]}.

import { ApiError, getStudies } from "./api.js";
import { el, facts, table } from "./dom.js";
import { figure, label, MISSING, percent, when } from "./format.js";
import { sentenceFor } from "./messages.js";

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

export class Worklist {
  constructor({ host, updated, refreshButton, detail, onAuthFailure }) {
    this.host = host;
    this.onAuthFailure = onAuthFailure;
    this.updated = updated;
    this.detail = detail;
    this.timer = null;
    this.unavailable = false;
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
      ),
    );
    title.focus();
  }
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
