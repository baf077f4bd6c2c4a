// The chat page: streams the agent's steps from POST /api/ask (server-sent events), plus search and SQL.
"use strict";

(() => {
  const { el, thumbLink, postJSON, getJSON, detail } = vx;
  const thread = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

  // ---- the agent ----------------------------------------------------------------------------------
  const askForm = document.getElementById("ask-form");
  const conversation = document.getElementById("conversation");

  // Server-sent events from a fetch body: yields {event, data} as each one arrives.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        yield { event, data: JSON.parse(data.join("\n") || "null") };
      }
    }
  }

  function stepItem(kind, args) {
    const title = { sql: "SQL", search: "Search", look: "Look again", schemas: "Schemas" }[kind] || kind;
    const body =
      kind === "sql"
        ? el("pre", { className: "sql" }, args.query || "")
        : kind === "search"
          ? el("span", {}, `“${args.query || ""}”`)
          : kind === "look"
            ? el("span", {}, `${args.image_path || ""}: ${args.question || ""}`)
            : el("span", { className: "muted" }, JSON.stringify(args));
    return el("li", { className: `step step-${kind}` }, el("span", { className: "step-kind" }, title), body);
  }

  async function ask(question) {
    const turn = el("li", { className: "turn" }, el("p", { className: "question" }, question));
    const steps = el("ol", { className: "steps" });
    const answer = el("p", { className: "answer pending" }, "thinking…");
    const cited = el("div", { className: "cited" });
    turn.append(steps, answer, cited);
    conversation.append(turn);
    let lastStep = null;
    let draft = "";
    const response = await fetch("/api/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": vx.csrf() },
      body: JSON.stringify({ question, thread }),
      credentials: "same-origin",
    });
    if (!response.ok) {
      let data = null;
      try {
        data = await response.json();
      } catch (_) {}
      answer.textContent = `error: ${detail(data)} (${response.status})`;
      answer.classList.add("error");
      return;
    }
    for await (const { event, data } of events(response)) {
      if (event === "delta") {
        draft += data.text;
        answer.textContent = draft;
      } else if (event === "result") {
        if (lastStep) lastStep.append(el("span", { className: "result" }, `→ ${data.summary}`));
      } else if (event === "answer") {
        answer.textContent = data.text;
        answer.classList.remove("pending");
        for (const image of data.images || []) cited.append(thumbLink(image.sha256, image.path));
      } else if (event === "error") {
        answer.textContent = `error: ${data.message}`;
        answer.classList.add("error");
      } else {
        draft = "";
        lastStep = stepItem(event, data.args || {});
        steps.append(lastStep);
      }
    }
  }

  if (askForm) {
    askForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = askForm.elements.question;
      const question = input.value.trim();
      if (!question) return;
      input.value = "";
      const button = askForm.querySelector("button");
      button.disabled = true;
      try {
        await ask(question);
      } finally {
        button.disabled = false;
        input.focus();
      }
    });
  }

  // ---- search and read-only SQL ---------------------------------------------------------------------
  const results = document.getElementById("tool-results");

  document.getElementById("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = event.target.elements.q.value.trim();
    if (!q) return;
    const { status, data } = await getJSON(`/api/search?k=24&q=${encodeURIComponent(q)}`);
    results.replaceChildren();
    if (status !== 200) {
      results.append(el("p", { className: "error" }, detail(data)));
      return;
    }
    const grid = el("div", { className: "thumb-grid" });
    for (const hit of data) {
      const link = thumbLink(hit.sha256, hit.path);
      link.append(el("span", { className: "muted" }, `${hit.score.toFixed(2)} · ${hit.snippet}`));
      grid.append(link);
    }
    results.append(el("p", { className: "muted" }, `${data.length} results for “${q}”`), grid);
  });

  document.getElementById("sql-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const { status, data } = await postJSON("/api/sql", { query: event.target.elements.query.value });
    results.replaceChildren();
    if (status !== 200) {
      results.append(el("p", { className: "error" }, detail(data)));
      return;
    }
    const columns = data.length ? Object.keys(data[0]) : [];
    const table = el("table", { className: "sql-rows" });
    table.append(el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))));
    const body = el("tbody");
    const grid = el("div", { className: "thumb-grid" });
    for (const row of data) {
      body.append(el("tr", {}, ...columns.map((c) => el("td", {}, row[c] === null ? "" : typeof row[c] === "object" ? JSON.stringify(row[c]) : row[c]))));
      if (typeof row.sha256 === "string" && /^[0-9a-f]{64}$/.test(row.sha256)) grid.append(thumbLink(row.sha256, row.path || row.sha256));
    }
    table.append(body);
    const note = columns.includes("sha256") ? null : el("p", { className: "muted" }, "Select the sha256 column to see thumbnails.");
    results.append(el("p", { className: "muted" }, `${data.length} rows`), grid, note, table);
  });
})();
