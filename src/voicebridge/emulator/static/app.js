// Live transcript view of the ServiceNow emulator. Plain JS, no build step.
// Every piece of stored data is untrusted (transcripts come from callers): it reaches the DOM only through
// textContent, dataset and checked hrefs, never as markup.
"use strict";

(function () {
  const POLL_MS = 500;
  const HIDDEN_POLL_MS = 3000;
  const API = "/ui/api/interactions";
  const NOTE_LABELS = { categories: "Categories", postContactSummary: "Contact summary" };
  const STATE_LABELS = { new: "New", work_in_progress: "Work in progress", closed_complete: "Closed complete" };

  const $ = (id) => document.getElementById(id);
  let selectedId = idFromHash();
  let shownId = null;
  let lastListText = null;
  let lastDetailText = null;
  let seen = new Set();

  function idFromHash() {
    const match = /^#\/i\/([^/]+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clock(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const minutes = Math.floor(total / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return `${minutes}:${seconds}`;
  }

  function caller(item) {
    return item.caller_phone_number || item.user_id || "unknown caller";
  }

  function timeSpan(label, stamp) {
    // stored as "YYYY-MM-DD HH:MM:SS" UTC: the time in the list, the whole stamp on hover
    const span = el("span", "", `${label} ${stamp ? stamp.slice(11) || stamp : "–"}`);
    if (stamp) span.title = `${label} ${stamp} UTC`;
    return span;
  }

  function stateLabel(state) {
    return STATE_LABELS[state] || state || "unknown";
  }

  function stateClass(state) {
    return "state state-" + (/^[a-z_]+$/.test(state) ? state : "other");
  }

  function safeUrl(text) {
    try {
      const url = new URL(text);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  // ---- the interaction list ----

  function renderList(data) {
    const list = $("interactions");
    const items = data.interactions;
    $("no-interactions").hidden = items.length > 0;
    $("interaction-total").textContent = items.length ? String(items.length) : "";
    const current = currentId(items);
    list.replaceChildren(
      ...items.map((item) => {
        const li = el("li", "interaction" + (item.sys_id === current ? " selected" : ""));
        li.dataset.sysId = item.sys_id;
        li.dataset.state = item.state;
        li.dataset.messageCount = String(item.message_count);
        const link = el("a", "interaction-link");
        link.href = "#/i/" + encodeURIComponent(item.sys_id);
        if (item.sys_id === current) link.setAttribute("aria-current", "true");
        const top = el("div", "row");
        top.append(el("span", "number", item.number), el("span", stateClass(item.state), stateLabel(item.state)));
        const middle = el("div", "row caller", caller(item));
        const times = el("div", "row times");
        times.append(timeSpan("opened", item.opened_at), item.closed_at ? timeSpan("closed", item.closed_at) : el("span", "", "open"));
        const counts = el("div", "row counts");
        const notes = item.note_count ? ` · ${item.note_count} note${item.note_count === 1 ? "" : "s"}` : "";
        counts.textContent = `${item.message_count} message${item.message_count === 1 ? "" : "s"}${notes}`;
        link.append(top, middle, times, counts);
        li.append(link);
        return li;
      })
    );
  }

  function currentId(items) {
    if (selectedId) return selectedId;
    return items.length ? items[0].sys_id : null; // follow the newest interaction
  }

  // ---- one conversation ----

  function fact(list, term, value) {
    if (!value) return;
    list.append(el("dt", "", term), el("dd", "", value));
  }

  function issueRanges(text) {
    // "begin-end[,begin-end...]" character ranges of the content (Contact Lens issues detected)
    return String(text || "")
      .split(",")
      .map((part) => /^(\d+)-(\d+)$/.exec(part.trim()))
      .filter(Boolean)
      .map((m) => [Number(m[1]), Number(m[2])])
      .sort((a, b) => a[0] - b[0]);
  }

  function textWithIssues(paragraph, content, ranges) {
    let position = 0;
    for (const [begin, end] of ranges) {
      if (begin < position || end > content.length || end <= begin) continue;
      paragraph.append(document.createTextNode(content.slice(position, begin)));
      const mark = el("mark", "issue", content.slice(begin, end));
      mark.title = "Issue detected";
      paragraph.append(mark);
      position = end;
    }
    paragraph.append(document.createTextNode(content.slice(position)));
  }

  function messageNode(message) {
    const kind = message.is_internal ? "note" : message.is_event ? "event" : "transcript";
    const side = message.is_agent ? "agent" : "customer";
    const li = el("li", `msg ${kind} ${side}`);
    if (!seen.has(message.sys_id)) li.classList.add("fresh");
    Object.assign(li.dataset, {
      sysId: message.sys_id,
      sequence: String(message.sequence),
      begin: String(message.begin_offset_millis),
      end: String(message.end_offset_millis),
      participant: message.participant,
      kind: kind,
      sentiment: message.sentiment,
    });
    const range = `${clock(message.begin_offset_millis)}–${clock(message.end_offset_millis)}`;
    if (kind === "note") {
      const note = el("aside", "note-box");
      const noteType = message.attributes.noteType || "";
      const head = el("div", "meta");
      head.append(el("span", "note-label", "Agent-only note"));
      head.append(el("span", "note-type", NOTE_LABELS[noteType] || noteType || "note"));
      head.append(el("span", "offset", range));
      note.append(head, el("p", "text", message.content));
      li.append(note);
      return li;
    }
    if (kind === "event") {
      li.append(el("span", "offset", range), el("span", "text", message.content));
      return li;
    }
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    const speaker = message.participant === "AGENT" ? "Agent" : message.participant === "CUSTOMER" ? "Customer" : message.participant;
    meta.append(el("span", "speaker", speaker), el("span", "offset", range));
    if (message.sentiment) {
      const sentiment = message.sentiment.toLowerCase();
      const chip = el("span", "sentiment sentiment-" + (/^[a-z]+$/.test(sentiment) ? sentiment : "other"), sentiment);
      chip.title = "Sentiment";
      meta.append(chip);
    }
    const paragraph = el("p", "text");
    textWithIssues(paragraph, message.content, issueRanges(message.attributes.issuesDetected));
    bubble.append(meta, paragraph);
    li.append(bubble);
    return li;
  }

  function renderDetail(data) {
    const item = data.interaction;
    const scroller = document.querySelector(".detail");
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    if (shownId !== item.sys_id) seen = new Set();
    $("detail-empty").hidden = true;
    $("detail").hidden = false;
    $("detail-number").textContent = item.number;
    const state = $("detail-state");
    state.className = stateClass(item.state);
    state.textContent = stateLabel(item.state);
    const facts = $("detail-facts");
    facts.replaceChildren();
    fact(facts, "Caller", caller(item));
    fact(facts, "Contact", item.client_session_id);
    fact(facts, "Agent", item.assigned_to);
    fact(facts, "Opened", item.opened_at && item.opened_at + " UTC");
    fact(facts, "Closed", item.closed_at && item.closed_at + " UTC");
    const recording = $("recording-link");
    const href = item.closed_at ? safeUrl(item.recording_url) : null;
    recording.hidden = !href;
    if (href) recording.href = href;
    else recording.removeAttribute("href");
    const conversation = $("conversation");
    conversation.dataset.interaction = item.sys_id;
    conversation.dataset.state = item.state;
    conversation.replaceChildren(...data.messages.map(messageNode));
    $("conversation-empty").hidden = data.messages.length > 0;
    const firstRender = shownId !== item.sys_id;
    data.messages.forEach((message) => seen.add(message.sys_id));
    shownId = item.sys_id;
    if (atBottom || firstRender) scroller.scrollTop = scroller.scrollHeight;
  }

  function clearDetail() {
    shownId = null;
    $("detail").hidden = true;
    $("detail-empty").hidden = false;
  }

  // ---- polling ----

  async function getText(url) {
    const response = await fetch(url, { cache: "no-cache", headers: { Accept: "application/json" } });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.text();
  }

  async function refresh() {
    const listText = await getText(API);
    const list = JSON.parse(listText);
    if (listText !== lastListText) {
      lastListText = listText;
      renderList(list);
    }
    const id = currentId(list.interactions);
    if (!id) {
      clearDetail();
      return;
    }
    const detailText = await getText(API + "/" + encodeURIComponent(id));
    if (detailText === null) {
      lastDetailText = null;
      clearDetail();
      $("detail-empty").textContent = "No such interaction.";
      return;
    }
    if (detailText !== lastDetailText || shownId !== id) {
      lastDetailText = detailText;
      renderDetail(JSON.parse(detailText));
    }
  }

  async function tick() {
    try {
      await refresh();
      const mode = selectedId ? "" : " · following the newest interaction";
      setStatus("live", `Live · updated ${new Date().toLocaleTimeString()}${mode}`);
    } catch (_) {
      setStatus("error", "Emulator unreachable, retrying…");
    } finally {
      window.setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  window.addEventListener("hashchange", () => {
    selectedId = idFromHash();
    lastListText = null; // re-render the selection
    lastDetailText = null;
  });

  tick();
})();
