// The record page: per-tool box toggles, field hover highlighting, and the review form (Accept / Save).
"use strict";

(() => {
  const svg = document.querySelector("svg.overlay");

  // ---- boxes: toggle per tool, highlight a field's evidence ----------------------------------------
  for (const toggle of document.querySelectorAll("[data-toggle-tool]")) {
    toggle.addEventListener("change", () => {
      const group = svg && svg.querySelector(`g.tool[data-tool="${CSS.escape(toggle.dataset.toggleTool)}"]`);
      if (group) group.classList.toggle("hidden", !toggle.checked);
    });
  }

  function highlight(ids) {
    if (!svg) return;
    const wanted = new Set(ids);
    svg.classList.toggle("focus", wanted.size > 0);
    for (const box of svg.querySelectorAll("g.box")) box.classList.toggle("hl", wanted.has(box.dataset.id));
  }

  for (const row of document.querySelectorAll("tr.field-row")) {
    const ids = (row.dataset.boxes || "").split(" ").filter(Boolean);
    row.addEventListener("mouseenter", () => highlight(ids));
    row.addEventListener("mouseleave", () => highlight([]));
  }
  for (const ref of document.querySelectorAll(".ref[data-ref]")) {
    ref.addEventListener("mouseenter", (event) => {
      event.stopPropagation();
      highlight([ref.dataset.ref]);
    });
  }

  // ---- the review form -------------------------------------------------------------------------------
  const form = document.getElementById("review-form");
  if (!form) return;

  for (const box of form.querySelectorAll("input[data-indeterminate]")) box.indeterminate = true;

  form.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.classList.contains("fadd")) {
      const node = target.closest(".fnode");
      const template = node.querySelector(":scope > template.fnew");
      const list = node.querySelector(":scope > .flist");
      list.append(template.content.cloneNode(true));
      delete node.dataset.null;
      for (const box of list.querySelectorAll("input[data-indeterminate]")) box.indeterminate = true;
      const first = list.lastElementChild && list.lastElementChild.querySelector(".fval");
      if (first) first.focus();
    } else if (target.classList.contains("fremove")) {
      const item = target.closest(".fitem");
      const node = item.closest(".fnode-list");
      item.remove();
      if (node) delete node.dataset.null;
    }
  });
  form.addEventListener("input", (event) => {
    const node = event.target instanceof HTMLElement && event.target.closest(".fnode");
    for (let n = node; n; n = n.parentElement && n.parentElement.closest(".fnode")) delete n.dataset.null;
  });

  class FieldProblem extends Error {
    constructor(node, message) {
      super(message);
      this.node = node;
    }
  }

  // The form's value as JSON, following the kinds the server generated it from.
  function read(node, path) {
    node.dataset.path = path;
    const kind = node.dataset.kind;
    const nullable = node.dataset.nullable === "1";
    const wasNull = node.dataset.null === "1";
    if (kind === "object") {
      const out = {};
      let anySet = false;
      for (const child of node.querySelectorAll(":scope > .fobject > .fnode")) {
        const value = read(child, path ? `${path}.${child.dataset.name}` : child.dataset.name);
        out[child.dataset.name] = value;
        if (value !== null) anySet = true;
      }
      return nullable && wasNull && !anySet ? null : out;
    }
    if (kind === "list") {
      const items = [...node.querySelectorAll(":scope > .flist > .fitem > .fnode")].map((child, i) =>
        read(child, `${path}.${i}`),
      );
      return nullable && wasNull && items.length === 0 ? null : items;
    }
    const input = node.querySelector(":scope > .fval");
    if (kind === "enum") return JSON.parse(input.value);
    if (kind === "boolean") return input.indeterminate ? null : input.checked;
    if (kind === "integer" || kind === "number") {
      if (input.value.trim() === "") return input.validity.badInput ? input.value : null;
      return Number(input.value);
    }
    if (kind === "json") {
      if (input.value.trim() === "") return null;
      try {
        return JSON.parse(input.value);
      } catch (_) {
        throw new FieldProblem(node, "not valid JSON");
      }
    }
    return input.value === "" && nullable ? null : input.value;
  }

  const status = form.querySelector(".form-status");
  const errorBox = form.querySelector(".form-errors");

  function clearErrors() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    for (const node of form.querySelectorAll(".fnode.invalid")) node.classList.remove("invalid");
    for (const box of form.querySelectorAll(".ferror")) box.textContent = "";
  }

  function showErrors(errors) {
    errorBox.hidden = false;
    errorBox.append(vx.el("p", {}, "Not saved: fix these values."));
    const list = vx.el("ul");
    for (const error of errors) {
      list.append(vx.el("li", {}, vx.el("b", {}, error.field), ": ", error.message));
      let node = null;
      for (let path = error.field; path && !node; path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "") {
        node = form.querySelector(`.fnode[data-path="${CSS.escape(path)}"]`);
      }
      if (node) {
        node.classList.add("invalid");
        const box = node.querySelector(":scope > .ferror");
        box.textContent = box.textContent ? `${box.textContent}; ${error.message}` : error.message;
      }
    }
    errorBox.append(list);
  }

  async function send(body) {
    clearErrors();
    status.textContent = "saving…";
    const reviewer = form.querySelector('input[name="by"]').value.trim();
    if (reviewer) localStorage.setItem("visextract-reviewer", reviewer);
    const payload = { schema: form.dataset.schema, version: Number(form.dataset.version), by: reviewer || null, ...body };
    const { status: code, data } = await vx.postJSON(`/api/records/${form.dataset.sha}/review`, payload);
    if (code === 200) {
      status.textContent = `saved as version ${data.version}`;
      if (form.dataset.next) window.location.assign(form.dataset.next);
      else window.location.reload();
    } else if (code === 422 && data && Array.isArray(data.errors)) {
      status.textContent = "";
      showErrors(data.errors);
    } else if (code === 409) {
      status.textContent = "";
      errorBox.hidden = false;
      errorBox.append(
        vx.el("p", {}, `Not saved: this record changed since you opened it (it is now version ${data && data.version}). `),
        vx.el("a", { href: window.location.href }, "Reload to see the current version"),
      );
    } else {
      status.textContent = `not saved: ${vx.detail(data)} (${code})`;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = {};
    try {
      for (const node of form.querySelectorAll(":scope > .fnode")) data[node.dataset.name] = read(node, node.dataset.name);
    } catch (problem) {
      if (!(problem instanceof FieldProblem)) throw problem;
      clearErrors();
      showErrors([{ field: problem.node.dataset.path, message: problem.message }]);
      return;
    }
    send({ data });
  });
  form.querySelector("button.accept").addEventListener("click", () => send({ accept: true }));

  const saved = localStorage.getItem("visextract-reviewer");
  if (saved) form.querySelector('input[name="by"]').value = saved;
  window.vxReview = { accept: () => send({ accept: true }), form };
})();
