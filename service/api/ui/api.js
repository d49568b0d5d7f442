// Every call the page makes to the service, and the only place that knows the API key.
// The key lives in this module's closure: never in the URL, a cookie or web storage, so it is gone
// when the tab is reloaded or closed. Paths are relative to /ui/, so a proxy prefix is kept.

let apiKey = null;

export function setKey(key) {
  apiKey = key;
}

export function forgetKey() {
  apiKey = null;
}

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

async function readJson(response) {
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("application/json")) {
    return null;
  }
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// Every request: the key in the Authorization header (never the URL), no cookies, no cache, no
// redirects, no referrer. A non-2xx answer becomes an ApiError with the service's code and detail.
async function send(path, accept, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set("Accept", accept);
  if (apiKey !== null) {
    headers.set("Authorization", `Bearer ${apiKey}`);
  }
  let response;
  try {
    response = await fetch(path, {
      ...init,
      headers,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "network_error", "");
  }
  if (!response.ok) {
    const body = await readJson(response);
    const code = body && typeof body.code === "string" ? body.code : `http_${response.status}`;
    const detail = body && typeof body.detail === "string" ? body.detail : "";
    throw new ApiError(response.status, code, detail);
  }
  return response;
}

async function call(path, init = {}) {
  return readJson(await send(path, "application/json", init));
}

// Binary results (a PNG, a DICOM object) as a Blob: an <img> cannot send the key, so the page
// fetches with the header and shows the bytes from an object URL.
async function blob(path, accept) {
  const response = await send(path, accept);
  return response.blob();
}

export function getModel() {
  return call("../v1/models");
}

export function getStudies() {
  return call("../v1/studies");
}

// One film's results, addressed by the UIDs the worklist lists (validated by the service).
function resultPath(studyUid, sopUid, name) {
  const path = `../v1/studies/${encodeURIComponent(studyUid)}/instances/${encodeURIComponent(sopUid)}`;
  return name ? `${path}/${name}` : path;
}

// name: overlay.png (the heat map over the film), film.png (the film alone), sc.dcm, sr.dcm.
export function getResult(studyUid, sopUid, name) {
  return blob(resultPath(studyUid, sopUid, name), name.endsWith(".png") ? "image/png" : "application/dicom");
}

// film=true: the service also returns the bare film under the overlay, so the heat map can be faded
// and a DICOM film, which the browser cannot decode, can be seen at all.
export function predict(file) {
  const form = new FormData();
  form.append("file", file, "film");
  return call("../v1/predict?film=true", { method: "POST", body: form });
}
