// The review page: asks for the API key, then shows three views - try a film, the worklist and
// the model card. Everything comes from the service's own API on this origin.

import { ApiError, forgetKey, getModel, predict, setKey } from "./api.js";
import { el, UrlBag } from "./dom.js";
import { sentenceFor } from "./messages.js";
import { renderModel } from "./model.js";
import { renderPrediction, renderRefusal } from "./result.js";
import { Worklist } from "./worklist.js";

const $ = (id) => document.getElementById(id);

// session counts key entries: an answer that arrives after the key was forgotten is dropped.
const state = { card: null, busy: false, session: 0 };
const urls = new UrlBag();
const worklist = new Worklist({
  host: $("worklist-body"),
  updated: $("worklist-updated"),
  refreshButton: $("worklist-refresh"),
  detail: $("study-detail"),
  onAuthFailure: (error) => handleAuthFailure(error),
  card: () => state.card,
});

function showView(name, { focus = true } = {}) {
  for (const button of document.querySelectorAll(".view-button")) {
    if (button.dataset.view === name) {
      button.setAttribute("aria-current", "page");
    } else {
      button.removeAttribute("aria-current");
    }
  }
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== name;
  }
  if (name === "worklist") {
    worklist.start();
  } else {
    worklist.stop();
  }
  if (focus) {
    $(`${name}-title`).focus();
  }
}

function lock(message) {
  forgetKey();
  state.session += 1;
  state.card = null;
  urls.revokeAll();
  worklist.reset();
  for (const id of ["film-result", "model-body"]) {
    $(id).replaceChildren();
  }
  $("film-status").textContent = "";
  $("session-model").textContent = "";
  $("views").hidden = true;
  $("session").hidden = true;
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = true;
  }
  $("access").hidden = false;
  $("key-message").textContent = message;
  $("key-input").focus();
}

// Any call answered 401 means the key stopped working (rotated, revoked): back to the key form.
function handleAuthFailure(error) {
  if (error instanceof ApiError && (error.status === 401 || error.code === "forbidden")) {
    lock(sentenceFor(error.code));
    return true;
  }
  return false;
}

async function unlock(event) {
  event.preventDefault();
  const input = $("key-input");
  const key = input.value.trim();
  input.value = ""; // the key is not left in the page
  if (key === "") {
    $("key-message").textContent = "Enter an API key.";
    input.focus();
    return;
  }
  $("key-message").textContent = "Checking the key…";
  setKey(key);
  try {
    state.card = await getModel();
  } catch (error) {
    if (!(error instanceof ApiError)) {
      throw error;
    }
    lock(sentenceFor(error.code));
    return;
  }
  $("key-message").textContent = "";
  $("access").hidden = true;
  $("views").hidden = false;
  $("session").hidden = false;
  $("session-model").textContent = `${state.card.name} ${state.card.version}`;
  $("model-body").replaceChildren(renderModel(state.card));
  showView("film");
}

async function analyse(file) {
  if (state.busy || !file) {
    return;
  }
  state.busy = true;
  const session = state.session;
  const status = $("film-status");
  const host = $("film-result");
  status.textContent = "Analysing the film…";
  host.setAttribute("aria-busy", "true");
  try {
    const prediction = await predict(file);
    if (session !== state.session) {
      return;
    }
    urls.revokeAll();
    host.replaceChildren(renderPrediction(prediction, state.card, urls));
    status.textContent = prediction.triage
      ? `Analysed: ${prediction.triage.level}.`
      : `Analysed: ${prediction.predicted_class}.`;
  } catch (error) {
    if (!(error instanceof ApiError)) {
      throw error;
    }
    if (session !== state.session || handleAuthFailure(error)) {
      return;
    }
    urls.revokeAll();
    host.replaceChildren(renderRefusal(error));
    status.textContent = "The film was not analysed.";
  } finally {
    host.removeAttribute("aria-busy");
    state.busy = false;
  }
}

function wireFilmInput() {
  const input = $("file-input");
  const zone = $("drop-zone");
  $("choose-file").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const [file] = input.files;
    input.value = "";
    analyse(file);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    analyse(event.dataTransfer.files[0]);
  });
  // A film dropped beside the zone must not make the browser navigate away to the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

function main() {
  $("key-form").addEventListener("submit", unlock);
  $("forget-key").addEventListener("click", () => lock("The key was forgotten. Enter a key to go on."));
  for (const button of document.querySelectorAll(".view-button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  wireFilmInput();
  $("key-input").focus();
  document.body.append(el("span", { hidden: true, "data-testid": "ready" }));
}

main();
