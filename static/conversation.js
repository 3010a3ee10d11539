// The conversation: messages, sending, the streamed answer and its rendering.
//
// Each frame goes through the pure reducer (reducer.js); `applyState(prev, next)` turns what
// changed into DOM work: the answer's markdown (markdown-view.js, only the growing last block
// is rebuilt), the "Thinking…" block, the scenario panel's live JSON and patch preview, notes
// and errors. Model text reaches the DOM only as text nodes.

import { ApiError, isAbort, streamAgent } from "./api.js";
import { describeChanges } from "./change-words.js";
import { errorMessage } from "./health.js";
import { createMarkdownView } from "./markdown-view.js";
import { REPAIR_NOTICE, initialState, reduce, thinkingMs } from "./reducer.js";
import { el } from "./scenario-view.js";
import { buildHistory, newId } from "./store.js";

export const CUT_OFF_NOTE = "Cut off: the answer reached the model's output limit (the server's MAX_OUTPUT_TOKENS).";

/**
 * The text a finished answer shows. Trailing blank lines go; after a modify or create whose
 * scenario arrived, a last paragraph that only led in to the block ("Here is the updated
 * scenario; everything else is as before:") goes too: the change summary takes its place.
 * The saved text (and the history sent to the server) keeps everything.
 */
export function displayText(msg) {
  let text = msg.content.replace(/\s+$/, "");
  if (msg.changeSummary) {
    const cut = text.lastIndexOf("\n\n");
    const lastPara = text.slice(cut + 1).trim();
    if (cut !== -1 && lastPara.endsWith(":") && !lastPara.includes("\n")) text = text.slice(0, cut).replace(/\s+$/, "");
  }
  return text;
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** Status tag of a message: "Stopped", "Failed", "Cut off" or "". */
function statusLabel(msg) {
  if (msg.status === "stopped") return "Stopped";
  if (msg.status === "error") return "Failed";
  if (msg.cutOff) return "Cut off";
  return "";
}

/**
 * Follow the answer as it grows unless the reader scrolled up on purpose. Only a gesture moves
 * the reader away (a wheel or touch moving up, a key, dragging the scrollbar); a layout change,
 * such as a newline token making the answer one line taller, never does. Scrolling back to the
 * bottom resumes following. The scroll itself runs at most once per animation frame.
 */
export function createFollower(box) {
  let follow = true;
  let scheduled = false;
  let dragging = false;
  let lastTop = box.scrollTop;
  let touchY = null;
  const nearBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 24;

  box.addEventListener("wheel", (e) => {
    if (e.deltaY < 0) follow = false;
  }, { passive: true });
  box.addEventListener("touchstart", (e) => {
    touchY = e.touches[0] ? e.touches[0].clientY : null;
  }, { passive: true });
  box.addEventListener("touchmove", (e) => {
    const y = e.touches[0] ? e.touches[0].clientY : null;
    // The finger moving down drags the content down: the reader goes up.
    if (touchY !== null && y !== null && y > touchY + 2) follow = false;
    touchY = y;
  }, { passive: true });
  box.addEventListener("keydown", (e) => {
    if (["ArrowUp", "PageUp", "Home"].includes(e.key)) follow = false;
  });
  box.addEventListener("pointerdown", (e) => {
    // A press on the box itself (not on a message) is the scrollbar.
    if (e.target === box) dragging = true;
  });
  window.addEventListener("pointerup", () => {
    dragging = false;
  });
  box.addEventListener("scroll", () => {
    if (nearBottom()) follow = true;
    else if (dragging && box.scrollTop < lastTop) follow = false;
    lastTop = box.scrollTop;
  }, { passive: true });

  return {
    /** Scroll to the end (once per frame) if following; `force` starts following again. */
    toEnd(force = false) {
      if (force) follow = true;
      if (scheduled || !follow) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        if (follow) {
          box.scrollTop = box.scrollHeight;
          lastTop = box.scrollTop;
        }
      });
    },
    get following() {
      return follow;
    },
  };
}

/**
 * Wire the conversation. Dependencies: `els` (the page's elements), `state` and `save` /
 * `saveSoon` (store.js), `announce`, `panel` (scenario-panel.js), `inspector`, `health`
 * (health.js), `withAuth` (auth.js) and `onBusy(busy)`, told when a stream starts and ends.
 */
export function createConversation({ els, state, save, saveSoon, announce, panel, inspector, health, withAuth, onBusy }) {
  const views = new Map(); // message id -> view (see renderMessage)
  const retryBodies = new Map(); // assistant message id -> the request body it answered
  const follower = createFollower(els.transcript);
  let active = null; // the request in flight: {controller, msg}
  let lastBody = null; // the last streamed request's body, for "Compare with buffered"

  // ---- rendering a message ------------------------------------------------------------

  function renderMessage(msg) {
    const root = el("article", `msg msg-${msg.role}`);
    root.dataset.id = msg.id;
    root.dataset.status = msg.status;
    const meta = el("div", "msg-meta");
    meta.appendChild(el("span", "msg-role", msg.role === "user" ? "You" : "Agent"));
    const intent = el("span", "msg-intent", msg.intent || "");
    intent.hidden = !msg.intent;
    meta.appendChild(intent);
    const status = el("span", "msg-status", statusLabel(msg));
    status.hidden = !status.textContent;
    meta.appendChild(status);
    root.appendChild(meta);

    const text = el("div", "msg-text");
    root.appendChild(text);
    const caret = el("span", "caret");
    caret.setAttribute("aria-hidden", "true");
    const view = { root, text, caret, status, intent, md: null, plain: null, thinking: null, errorBox: null, notes: null, change: null };
    if (msg.role === "assistant") {
      view.md = createMarkdownView(text);
      view.md.replace(msg.status === "streaming" ? msg.content : displayText(msg));
    } else {
      // The user's own words are shown as typed.
      view.plain = document.createTextNode(msg.content);
      text.appendChild(view.plain);
    }
    if (msg.status === "streaming") {
      view.md.caret(caret);
      root.setAttribute("aria-busy", "true");
    }
    views.set(msg.id, view);
    if (msg.reasoning && (msg.reasoning.text || msg.reasoning.withheld)) {
      const t = thinkingBlock(view);
      t.text.appendData(msg.reasoning.text || "");
      setThinkingLabel(view, msg.reasoning.withheld, msg.reasoning.ms, false);
      t.details.open = false;
    }
    if (msg.cutOff) addNote(view, CUT_OFF_NOTE, "cut-off");
    if (msg.changeSummary) renderChangeSummary(msg, view);
    root.dataset.cutOff = msg.cutOff ? "true" : "false";
    if (msg.status === "error" && msg.error) renderError(msg, view);
    return root;
  }

  /** The collapsible "Thinking…" block of an answer, made on its first reasoning frame. */
  function thinkingBlock(view) {
    if (view.thinking) return view.thinking;
    const details = el("details", "thinking");
    details.open = true;
    const summary = el("summary", "thinking-summary");
    const label = el("span", "thinking-label", "Thinking…");
    const time = el("span", "thinking-time", "");
    summary.append(label, " ", time);
    const body = el("div", "thinking-text");
    const text = document.createTextNode("");
    body.appendChild(text);
    details.append(summary, body);
    view.root.insertBefore(details, view.text);
    view.thinking = { details, label, time, body, text, timer: null };
    return view.thinking;
  }

  function setThinkingLabel(view, withheld, ms, streaming) {
    const t = view.thinking;
    const hidden = withheld ? " (hidden by the server)" : "";
    t.label.textContent = streaming ? `Thinking…${hidden}` : `Thought${hidden}`;
    t.time.textContent = typeof ms === "number" ? (streaming ? seconds(ms) : `for ${seconds(ms)}`) : "";
    t.details.dataset.state = streaming ? "thinking" : "done";
    t.details.dataset.withheld = withheld ? "true" : "false";
  }

  function addNote(view, text, kind) {
    if (!view.notes) {
      view.notes = el("div", "msg-notes");
      view.root.insertBefore(view.notes, view.errorBox || null);
    }
    const note = el("p", `msg-note msg-note-${kind}`, text);
    view.notes.appendChild(note);
    return note;
  }

  /** "Scenario updated: renamed the title, added role Journalist  [Show]" inside the answer. */
  function renderChangeSummary(msg, view) {
    if (view.change) view.change.remove();
    const box = el("div", "msg-change");
    box.appendChild(el("span", "msg-change-label", msg.changeSummary === "—" ? "Scenario updated." : "Scenario updated: "));
    if (msg.changeSummary !== "—") box.appendChild(el("span", "msg-change-text", msg.changeSummary));
    if (msg.firstChange) {
      const show = el("button", "btn btn-small msg-change-show", "Show");
      show.type = "button";
      show.addEventListener("click", () => panel.revealChange(msg.firstChange));
      box.appendChild(show);
    }
    view.root.insertBefore(box, view.notes || view.errorBox || null);
    view.change = box;
  }

  function renderError(msg, view) {
    if (view.errorBox) view.errorBox.remove();
    const box = el("div", "msg-error");
    box.setAttribute("role", "alert");
    const e = msg.error;
    box.appendChild(el("p", "msg-error-text", errorMessage(e)));
    const details = [];
    if (e.code) details.push(`code ${e.code}`);
    if (e.requestId) details.push(`request ${e.requestId}`);
    if (details.length) box.appendChild(el("p", "msg-error-detail", details.join(" · ")));
    if (msg.retried) {
      box.appendChild(el("p", "msg-error-detail", "Retried below."));
    } else {
      const retry = el("button", "btn btn-small retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => retryMessage(msg));
      box.appendChild(retry);
      if (e.retryAfter && e.retryAfter > 0) countdown(retry, Math.ceil(e.retryAfter));
    }
    view.root.appendChild(box);
    view.errorBox = box;
  }

  function countdown(button, secondsLeft) {
    button.disabled = true;
    const tick = () => {
      if (secondsLeft <= 0) {
        button.disabled = Boolean(active);
        button.textContent = "Retry";
        return;
      }
      button.textContent = `Retry in ${secondsLeft} s`;
      secondsLeft -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }

  function renderTranscript() {
    views.clear();
    const frag = document.createDocumentFragment();
    for (const msg of state.messages) frag.appendChild(renderMessage(msg));
    els.transcript.replaceChildren(els.transcriptEmpty, frag);
    els.transcriptEmpty.hidden = state.messages.length > 0;
    follower.toEnd(true);
  }

  function addMessage(fields) {
    const msg = { id: newId(), content: "", status: "complete", ...fields };
    state.messages.push(msg);
    els.transcript.appendChild(renderMessage(msg));
    els.transcriptEmpty.hidden = true;
    follower.toEnd(true);
    return msg;
  }

  // ---- sending --------------------------------------------------------------------------

  function setBusy(busy) {
    els.send.disabled = busy;
    els.stop.disabled = !busy;
    document.body.classList.toggle("is-streaming", busy);
    for (const b of els.transcript.querySelectorAll("button.retry")) b.disabled = busy || b.textContent !== "Retry";
    onBusy(busy);
  }

  function send() {
    const text = els.input.value.trim();
    if (!text || active) return;
    const body = { message: text, scenario: panel.current(), history: buildHistory(state.messages), mode: state.mode };
    addMessage({ role: "user", content: text, status: "complete" });
    els.input.value = "";
    startAnswer(body);
  }

  function startAnswer(body) {
    const msg = addMessage({ role: "assistant", content: "", status: "streaming" });
    retryBodies.set(msg.id, body);
    save();
    runStream(msg, body);
  }

  function retryMessage(msg) {
    if (active) return;
    let body = retryBodies.get(msg.id);
    if (!body) {
      // After a reload: rebuild it from the question this answer belonged to.
      const at = state.messages.indexOf(msg);
      let u = at - 1;
      while (u >= 0 && state.messages[u].role !== "user") u -= 1;
      if (u < 0) return;
      body = {
        message: state.messages[u].content,
        scenario: panel.current(),
        history: buildHistory(state.messages.slice(0, u)),
        mode: state.mode,
      };
    }
    msg.retried = true;
    const view = views.get(msg.id);
    if (view) renderError(msg, view);
    startAnswer(body);
  }

  function stop() {
    if (active) active.controller.abort();
  }

  // ---- one streamed answer ------------------------------------------------------------

  /**
   * The DOM work for one reducer step. `owns`: this run still owns the page (a run orphaned by
   * "New conversation" only finishes its own message).
   */
  function applyState(msg, prev, next, owns, t0) {
    const view = views.get(msg.id);
    if (next.intent !== prev.intent && next.intent) {
      msg.intent = next.intent;
      if (view) {
        view.intent.textContent = next.intent;
        view.intent.hidden = false;
      }
    }
    if ((next.model !== prev.model || next.provider !== prev.provider) && (next.model || next.provider)) health.showModel(next.model, next.provider);

    if (next.reasoning !== prev.reasoning && view) {
      const r = next.reasoning;
      const t = thinkingBlock(view);
      if (r.delta && r.text.length !== prev.reasoning.text.length) t.text.appendData(r.delta);
      msg.reasoning = { text: r.text, withheld: r.withheld, ms: thinkingMs(r, performance.now() - t0) };
      setThinkingLabel(view, r.withheld, msg.reasoning.ms, r.open);
      if (r.open && !t.timer) {
        t.timer = setInterval(() => {
          const ms = thinkingMs(r, performance.now() - t0);
          setThinkingLabel(view, r.withheld, ms, true);
        }, 200);
      }
      if (!r.open) {
        clearInterval(t.timer);
        t.timer = null;
        // Folded when the answer starts; the reader can open it again.
        if (prev.reasoning.open) t.details.open = false;
      }
      follower.toEnd();
    }

    // Lengths, not contents: comparing two long strings would read them both.
    if (next.text.length !== prev.text.length) {
      msg.content = next.text;
      if (view) view.md.append(next.delta);
      follower.toEnd();
      saveSoon();
    }

    if (!owns) return;
    if (next.block.open && !prev.block.open) panel.openLive();
    if (next.block.open && next.block.text.length !== prev.block.text.length && next.block.delta) panel.appendLive(next.block.delta);
    if (!next.block.open && prev.block.open && !next.result) panel.closeLive();
    if (next.preview && next.preview !== prev.preview && next.preview.ops !== (prev.preview && prev.preview.ops)) panel.showPreview(next.preview);
    if (!next.preview && prev.preview && !next.result) panel.dropPreview();
    if (next.repairs.length > prev.repairs.length && view) {
      addNote(view, REPAIR_NOTICE, "repair");
      announce(REPAIR_NOTICE);
    }
    if (next.notice !== prev.notice && next.notice) panel.showNotice(next.notice.text, next.notice.kind);
    if (next.result && !prev.result) {
      panel.closeLive();
      const before = next.base;
      const summary = panel.accept(next.result.scenario, next.result.changes, "agent");
      const changes = next.result.changes || [];
      const title = typeof next.result.scenario.title === "string" ? next.result.scenario.title : "";
      msg.changeSummary = before ? summary || describeChanges(changes, { before, after: next.result.scenario }) || "—" : `created “${title}”`;
      msg.firstChange = changes[0] ? { op: changes[0].op, path: changes[0].path } : undefined;
      if (view) renderChangeSummary(msg, view);
    }
  }

  async function runStream(msg, body) {
    const controller = new AbortController();
    active = { controller, msg };
    lastBody = body;
    setBusy(true);
    const record = inspector.begin();
    const t0 = performance.now();
    let s = initialState({ scenario: body.scenario ?? null });
    let requestId = null;

    const onEvent = ({ type, data, t }) => {
      inspector.frame(record, "event", type, data, t);
      if (active?.msg !== msg) return; // orphaned by New conversation
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        return; // the inspector shows it; nothing else to do with it
      }
      const next = reduce(s, { type, data: payload, t });
      if (next === s) return;
      const prev = s;
      s = next;
      applyState(msg, prev, next, !active || active.msg === msg, t0);
    };

    let outcome;
    let error = null;
    try {
      const res = await withAuth(() =>
        streamAgent(body, {
          signal: controller.signal,
          onResponse: ({ requestId: rid, t }) => {
            requestId = rid;
            inspector.headers(record, t, rid);
          },
          onEvent,
          onComment: ({ text, t }) => inspector.frame(record, "comment", "comment", text, t),
        }),
      );
      requestId = requestId || res.requestId;
      if (s.error) {
        outcome = "error";
        error = s.error;
      } else if (!s.done) {
        outcome = "error";
        error = { code: "incomplete", message: "The stream ended before the answer was finished. The text so far is kept.", retryable: true };
      } else {
        outcome = "complete";
      }
    } catch (err) {
      if (isAbort(err, controller.signal)) {
        outcome = "stopped";
      } else {
        outcome = "error";
        error =
          err instanceof ApiError
            ? { code: err.code, message: err.message, retryable: err.retryable, retryAfter: err.retryAfter, requestId: err.requestId }
            : { code: "client", message: `Unexpected problem in the page: ${err && err.message}`, retryable: true };
      }
    }
    if (error && !error.requestId && (requestId || s.requestId)) error.requestId = requestId || s.requestId;
    if (error && error.code === "budget_exhausted") health.budgetExhausted(error);
    const owns = !active || active.msg === msg;
    if (owns && (s.block.open || s.preview) && !s.result) {
      panel.closeLive();
      panel.dropPreview();
      if (outcome !== "error") {
        panel.showNotice(
          outcome === "stopped" ? "Stopped before the new version was complete; the current scenario is unchanged." : "No new version arrived; the current scenario is unchanged.",
          "info",
        );
      }
    }
    msg.cutOff = s.cutOff || undefined;
    finishAnswer(msg, outcome, error);
    const detail =
      outcome === "complete"
        ? s.done && s.done.finish_reason
          ? `${s.done.finish_reason}${s.done.timings && typeof s.done.timings.ttft_ms === "number" ? `; server-side first token ${Math.round(s.done.timings.ttft_ms)} ms` : ""}`
          : "done"
        : error
          ? `${error.code}`
          : "";
    inspector.end(record, outcome === "complete" ? "done" : outcome === "stopped" ? "stopped" : "error", detail, s.done && s.done.timings);
    health.refresh();
  }

  function finishAnswer(msg, outcome, error) {
    msg.status = outcome;
    if (error) msg.error = error;
    const view = views.get(msg.id);
    if (view) {
      view.root.dataset.status = outcome;
      view.root.dataset.cutOff = msg.cutOff ? "true" : "false";
      view.root.removeAttribute("aria-busy");
      view.md.caret(null);
      const shown = displayText(msg);
      if (shown !== msg.content) view.md.replace(shown);
      if (view.thinking) {
        clearInterval(view.thinking.timer);
        view.thinking.timer = null;
        if (msg.reasoning) setThinkingLabel(view, msg.reasoning.withheld, msg.reasoning.ms, false);
      }
      if (msg.cutOff) addNote(view, CUT_OFF_NOTE, "cut-off");
      view.status.textContent = statusLabel(msg);
      view.status.hidden = !view.status.textContent;
      if (outcome === "error") renderError(msg, view);
    }
    if (active && active.msg === msg) {
      active = null;
      setBusy(false);
    }
    save();
    if (outcome === "complete") announce(msg.cutOff ? "Answer complete, cut off by the output limit." : "Answer complete.");
    else if (outcome === "stopped") announce("Stopped. The partial answer is kept.");
    else announce(`Error: ${error ? errorMessage(error) : "the request failed"}`);
    if (document.activeElement === els.stop || document.activeElement === document.body) els.input.focus();
  }

  function newConversation() {
    if (active) {
      // The aborted run finishes on its own a moment later; it no longer owns the page.
      active.controller.abort();
      active = null;
      setBusy(false);
    }
    state.messages = [];
    retryBodies.clear();
    renderTranscript();
    save();
    announce("New conversation started. The scenario is kept.");
    els.input.focus();
  }

  // ---- wiring ---------------------------------------------------------------------------

  els.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  els.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  els.stop.addEventListener("click", stop);
  els.newConversation.addEventListener("click", newConversation);

  return {
    renderTranscript,
    stop,
    setBusy,
    get busy() {
      return Boolean(active);
    },
    get lastBody() {
      return lastBody;
    },
  };
}
