// Live calls: ask the panel for the live calls every 2 s and redraw the table.
// Everything a phone sent is put in with textContent, never as markup.
"use strict";

(function () {
  const table = document.getElementById("active-calls");
  if (!table) {
    return;
  }
  const tbody = table.tBodies[0];
  const empty = document.getElementById("no-calls");
  const summary = document.getElementById("active-summary");
  const problem = document.getElementById("poll-error");
  const source = table.dataset.source;
  const interval = Number(table.dataset.interval) || 2000;
  const canHangUp = Boolean(table.dataset.hangup);
  // The page's words in the admin's language, as the server wrote them (data-texts).
  const texts = JSON.parse(table.dataset.texts || "{}");
  const text = (english) => texts[english] || english;
  let stopped = false;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child);
      }
    }
    return node;
  }

  function party(number, name) {
    const cell = [el("span", { class: "key" }, number)];
    if (name) {
      cell.push(" ", el("span", { class: "subtle" }, name));
    }
    return cell;
  }

  // Under the callee, as the server draws it (_macros.html routing_lines): the ring
  // group the call came through, the members ringing now, who answered.
  function routing(cell, call) {
    if (call.via_group) {
      if (call.via_group === call.callee) {
        cell.append(" ", el("span", { class: "tag" }, text("ring group")));
      } else {
        cell.append(el("div", { class: "hint via-group" }, `${text("via ring group")} `,
          ...party(call.via_group, call.via_group_name)));
      }
    }
    if (call.ringing && call.ringing.length) {
      const line = el("div", { class: "hint ringing" }, `${text("ringing now:")} `);
      call.ringing.forEach(([number, name], index) => {
        if (index) {
          line.append(", ");
        }
        line.append(...party(number, name));
      });
      cell.append(line);
    }
    if (call.answered_by && call.answered_by !== call.callee) {
      cell.append(el("div", { class: "hint answered-by" }, `${text("answered by")} `,
        ...party(call.answered_by, call.answered_by_name)));
    }
    (call.transfers || []).forEach(([by, byName, target, targetName, detail]) => {
      const line = el("div", { class: "hint transferred" }, `${text("transferred by")} `,
        ...party(by, byName), " → ", ...party(target, targetName));
      if (detail) {
        line.append(" ", el("span", { class: "muted" }, `(${detail})`));
      }
      cell.append(line);
    });
    return cell;
  }

  function row(call) {
    const answered = call.state === "answered";
    const caller = el("td", { "data-label": text("Caller") }, ...party(call.caller, call.caller_name));
    if (call.caller_source) {
      caller.append(el("div", { class: "hint mono" }, call.caller_source));
    }
    const media = el("td", { "data-label": text("Media"), class: "media" },
      el("div", { class: "line mono" }, `${text("caller")} ${call.caller_media || "—"}`),
      el("div", { class: "line mono" }, `${text("callee")} ${call.callee_media || "—"}`));
    if (call.codec) {
      media.append(el("div", { class: "line" }, el("span", { class: "tag" }, call.codec)));
    }
    const tr = el("tr", { id: `live-${call.id}`, "data-state": call.state },
      el("td", { "data-label": text("Started"), class: "nowrap", title: call.started_utc },
        call.started),
      caller,
      routing(el("td", { "data-label": text("Callee") }, ...party(call.callee, call.callee_name)),
        call),
      el("td", { "data-label": text("State") },
        el("span", { class: `badge ${answered ? "ok" : "warn"}` },
          answered ? text("talking") : text(call.state))),
      el("td", { "data-label": text("Duration"), class: "nowrap" }, call.duration),
      media);
    if (canHangUp) {
      // A link to the page that asks "Hang up this call?", as the server draws it.
      tr.append(el("td", { "data-label": "" },
        el("a", { class: "button small danger", href: call.hangup_url }, text("Hang up"))));
    }
    return tr;
  }

  // Rows and cells that did not change stay the same elements, so a button
  // is never swapped from under a pointer about to click it.
  function update(old, fresh) {
    if (old.isEqualNode(fresh)) {
      return old;
    }
    old.dataset.state = fresh.dataset.state;
    Array.from(fresh.cells).forEach((cell, index) => {
      const current = old.cells[index];
      if (!current) {
        old.append(cell);
      } else if (!current.isEqualNode(cell)) {
        old.replaceChild(cell, current);
      }
    });
    return old;
  }

  function show(data) {
    const existing = new Map(Array.from(tbody.rows, (tr) => [tr.id, tr]));
    const rows = data.calls.map((call) => {
      const fresh = row(call);
      const old = existing.get(fresh.id);
      existing.delete(fresh.id);
      return old ? update(old, fresh) : fresh;
    });
    existing.forEach((tr) => tr.remove());
    rows.forEach((tr, index) => {
      if (tbody.rows[index] !== tr) {
        tbody.insertBefore(tr, tbody.rows[index] || null);
      }
    });
    table.hidden = data.count === 0;
    empty.hidden = data.count !== 0;
    summary.textContent = data.summary || `${data.count} live calls`;
    problem.hidden = true;
  }

  function fail(message) {
    problem.textContent = message;
    problem.hidden = false;
  }

  async function poll() {
    try {
      const response = await fetch(source, {
        credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
      });
      const data = await response.json();
      if (response.status === 401) {
        stopped = true;
        fail(text("%(error)s Reload the page to log in.").replace("%(error)s", data.error));
        return;
      }
      if (!response.ok) {
        throw new Error(data.error || response.statusText);
      }
      show(data);
    } catch (error) {
      fail(text("The panel does not answer (%(error)s); still trying.")
        .replace("%(error)s", error.message));
    }
  }

  async function loop() {
    await poll();
    if (!stopped) {
      window.setTimeout(loop, interval);
    }
  }

  window.setTimeout(loop, interval);
}());
