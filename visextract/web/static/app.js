// Shared helpers for every page: JSON requests that carry the page's CSRF token.
"use strict";

window.vx = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function answer(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, data };
  }

  async function postJSON(url, body) {
    const headers = { "Content-Type": "application/json", "X-CSRF-Token": csrf() };
    return answer(await fetch(url, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" }));
  }

  async function getJSON(url) {
    return answer(await fetch(url, { credentials: "same-origin" }));
  }

  // An element with attributes and text children; text always goes in as text, never as HTML.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // A thumbnail that links to its record.
  function thumbLink(sha256, caption) {
    const img = el("img", { className: "thumb", src: `/thumb/${encodeURIComponent(sha256)}`, alt: caption, loading: "lazy" });
    const name = caption.split("/").pop();
    return el("a", { className: "thumb-link", href: `/record/${encodeURIComponent(sha256)}`, title: caption }, img, el("span", { className: "caption" }, name));
  }

  function detail(data) {
    if (!data) return "no answer from the server";
    if (Array.isArray(data.errors)) return data.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    if (typeof data.detail === "string") return data.detail;
    return JSON.stringify(data);
  }

  function typing(event) {
    const t = event.target;
    return t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
  }

  return { csrf, postJSON, getJSON, el, thumbLink, detail, typing };
})();
