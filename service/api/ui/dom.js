// Building the page from data without HTML strings: every value lands in textContent or an
// attribute, so nothing a film or the service returns can become markup (Trusted Types enforce it).

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name === "class") {
      node.className = value;
    } else if (name === "text") {
      node.textContent = value;
    } else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

// A <dl> from [term, description] pairs; a description may be a node or text.
export function facts(pairs) {
  const list = el("dl", { class: "facts" });
  for (const [term, description] of pairs) {
    list.append(el("dt", { text: term }), el("dd", {}, description));
  }
  return list;
}

export function table(caption, headings, rows) {
  return el(
    "table",
    { class: "data" },
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", text: h })))),
    el(
      "tbody",
      {},
      rows.map((cells) =>
        el(
          "tr",
          {},
          cells.map((cell, i) => (i === 0 ? el("th", { scope: "row" }, cell) : el("td", {}, cell))),
        ),
      ),
    ),
  );
}

// Object URLs for films and overlays, revoked together when a view is cleared.
export class UrlBag {
  constructor() {
    this.urls = [];
  }

  fromBase64Png(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return this.fromBlob(new Blob([bytes], { type: "image/png" }));
  }

  fromBlob(blob) {
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  revokeAll() {
    for (const url of this.urls) {
      URL.revokeObjectURL(url);
    }
    this.urls = [];
  }
}
