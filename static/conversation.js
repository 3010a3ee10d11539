// The conversation: messages, sending, the streamed answer and its rendering, and what can be
// done with an answer (copy, regenerate, retry, resume, edit the last question).
//
// Each frame goes through the pure reducer (reducer.js); `applyState(prev, next)` turns what
// changed into DOM work: the answer's markdown (markdown-view.js, only the growing last block
// is rebuilt), the "Thinking…" block, the scenario panel's live JSON and patch preview, notes
// and errors. Model text reaches the DOM only as text nodes.
//
// One answer is one run on the server (resume.js): its frames carry ids, so a lost connection
// is joined again after the last frame applied, and a reload joins the run it left.

import { ApiError, cancelRun, isAbort, joinRun, streamAgent } from "./api.js";
import { describeChanges } from "./change-words.js";
import { errorMessage } from "./health.js";
import { createMarkdownView } from "./markdown-view.js";
import { REPAIR_NOTICE, initialState, reduce, resumeState, thinkingMs } from "./reducer.js";
import { clearRunRecord, lastEventId, loadRunRecord, reconnectDelay, resumePlan, saveRunRecord } from "./resume.js";
import { el } from "./scenario-view.js";
import { parseEventId } from "./sse.js";
import { beginVariant, buildHistory, newId, showVariant } from "./store.js";

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

/** Status tag of a message: "Stopped", "Interrupted", "Failed", "Cut off" or "". */
function statusLabel(msg) {
  if (msg.status === "stopped") return "Stopped";
  if (msg.status === "interrupted") return "Interrupted";
  if (msg.status === "error") return "Failed";
  if (msg.cutOff) return "Cut off";
  return "";
}

/** How long a Stop pressed before the response named its run waits for that name (ms). */
const STOP_WAIT_MS = 1000;

/** What the connection-lost error says once the joins have given up. */
export const LOST_MESSAGE = "The connection to the server was lost. The text so far is kept: Resume continues it while the server still has it, Retry asks again.";

function session() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve(false);
    }, { once: true });
  });

/** Copy text to the clipboard; the older execCommand path where the Clipboard API is missing. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* denied: try the old way */
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A button that copies `getText()` and says "Copied" for a moment. */
export function copyButton(label, getText, announce, className = "btn btn-small") {
  const button = el("button", `${className} copy`, label);
  button.type = "button";
  button.addEventListener("click", async () => {
    const ok = await copyText(getText());
    button.textContent = ok ? "Copied" : "Copy failed";
    announce(ok ? "Copied to the clipboard." : "Could not copy: the browser refused.");
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  });
  return button;
}

/**
 * Follow the answer as it grows unless the reader scrolled up on purpose. Only a gesture moves
 * the reader away (a wheel or touch moving up, a key, dragging the scrollbar); a layout change,
 * such as a newline token making the answer one line taller, never does. Scrolling down to the
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
    // Only a scroll down to the end brings the reader back. The event of the follower's own
    // scroll can arrive after a wheel that turned up, still at the end: it must not.
    if (box.scrollTop > lastTop && nearBottom()) follow = true;
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
 * (health.js), `withAuth` (auth.js), `toast` (toast.js) and `onBusy(busy)`, told when a stream
 * starts and ends.
 */
export function createConversation({ els, state, save, saveSoon, announce, panel, inspector, health, withAuth, toast, onBusy }) {
  const views = new Map(); // message id -> view (see renderMessage)
  const retryBodies = new Map(); // assistant message id -> the request body it answered
  const follower = createFollower(els.transcript);
  // The answer in flight: {controller, msg, runId, lastSeq, retryMs, body}. One at a time.
  let active = null;
  let lastBody = null; // the last streamed request's body, for "Compare with buffered"
  let leaving = false; // the page is being unloaded: leave the run for the next page to join
  // Runs the server said it no longer has (204 on a join): no Resume for their answers.
  const gone = new Set();

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
    const view = { root, text, caret, status, intent, md: null, plain: null, thinking: null, errorBox: null, notes: null, change: null, actions: null };
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
    if ((msg.status === "error" || msg.status === "interrupted") && msg.error) renderError(msg, view);
    renderActions(msg, view);
    return root;
  }

  /** Replace a message's element with a fresh rendering (a variant shown, a resumed answer). */
  function rerender(msg) {
    const old = views.get(msg.id);
    const fresh = renderMessage(msg);
    if (old && old.root.isConnected) old.root.replaceWith(fresh);
    return views.get(msg.id);
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
      view.root.insertBefore(view.notes, view.errorBox || view.actions || null);
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
    view.root.insertBefore(box, view.notes || view.errorBox || view.actions || null);
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
      retry.disabled = Boolean(active);
      retry.addEventListener("click", () => retryMessage(msg));
      box.appendChild(retry);
      if (e.retryAfter && e.retryAfter > 0) countdown(retry, Math.ceil(e.retryAfter));
    }
    view.root.insertBefore(box, view.actions || null);
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

  // ---- what can be done with a message ----------------------------------------------------

  const isLast = (msg) => state.messages[state.messages.length - 1] === msg;
  const lastUser = () => {
    for (let i = state.messages.length - 1; i >= 0; i--) if (state.messages[i].role === "user") return state.messages[i];
    return null;
  };
  // A stopped answer's run was cancelled (Stop sends the DELETE): only an interrupted one can go on.
  const canResume = (msg) => msg.status === "interrupted" && Boolean(msg.run && msg.run.id && !gone.has(msg.run.id));

  function actionButton(label, className, onClick, ariaLabel) {
    const b = el("button", `btn btn-small ${className}`, label);
    b.type = "button";
    if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
    b.disabled = Boolean(active);
    b.addEventListener("click", onClick);
    return b;
  }

  /**
   * The bar under a message. An answer: Copy; Regenerate (the last answer, finished); Retry (a
   * stopped one; a failed or interrupted one has it in its error box); Resume (the last answer,
   * interrupted, while its run may still be on the server); "‹ 1/2 ›" between regenerated
   * answers. The last question: Edit. Nothing while the message streams.
   */
  function renderActions(msg, view) {
    if (view.actions) view.actions.remove();
    view.actions = null;
    if (msg.status === "streaming" || view.editing) return;
    const bar = el("div", "msg-actions");
    if (msg.role === "assistant") {
      if (msg.content.trim()) bar.appendChild(copyButton("Copy", () => displayText(msg), announce));
      if (isLast(msg) && msg.status === "complete") bar.appendChild(actionButton("Regenerate", "regenerate", () => regenerate(msg)));
      if (msg.status === "stopped" && !msg.retried) bar.appendChild(actionButton("Retry", "retry", () => retryMessage(msg)));
      if (canResume(msg) && isLast(msg)) bar.appendChild(actionButton("Resume", "resume", () => resumeMessage(msg)));
      if (Array.isArray(msg.variants) && msg.variants.length > 1) {
        const nav = el("span", "variant-nav");
        nav.setAttribute("role", "group");
        nav.setAttribute("aria-label", "Answers to this message");
        const prev = actionButton("‹", "variant-prev", () => switchVariant(msg, msg.variant - 1), "Previous answer");
        prev.disabled = prev.disabled || msg.variant === 0;
        const next = actionButton("›", "variant-next", () => switchVariant(msg, msg.variant + 1), "Next answer");
        next.disabled = next.disabled || msg.variant === msg.variants.length - 1;
        const where = el("span", "variant-count", `${msg.variant + 1}/${msg.variants.length}`);
        nav.append(prev, where, next);
        bar.appendChild(nav);
      }
    } else if (msg === lastUser()) {
      bar.appendChild(actionButton("Edit", "edit", () => editMessage(msg), "Edit this message and send it again"));
    }
    if (!bar.childNodes.length) return;
    view.root.appendChild(bar);
    view.actions = bar;
  }

  /** Bring every message's bar up to date (after a send, a finish, a busy change). */
  function refreshActions() {
    for (const msg of state.messages) {
      const view = views.get(msg.id);
      if (view) renderActions(msg, view);
    }
  }

  function switchVariant(msg, to) {
    if (active || !showVariant(msg, to)) return;
    rerender(msg);
    save();
    announce(`Answer ${msg.variant + 1} of ${msg.variants.length}.`);
  }

  /** The request an answer answered: the one kept in memory, else rebuilt from its question. */
  function bodyFor(msg) {
    const kept = retryBodies.get(msg.id);
    if (kept) return kept;
    const at = state.messages.indexOf(msg);
    let u = at - 1;
    while (u >= 0 && state.messages[u].role !== "user") u -= 1;
    if (u < 0) return null;
    return {
      message: state.messages[u].content,
      scenario: panel.current(),
      history: buildHistory(state.messages.slice(0, u)),
      mode: state.mode,
    };
  }

  /** The same question and history again; the answer shown so far stays as variant 1 of 2. */
  function regenerate(msg) {
    if (active || !isLast(msg)) return;
    const body = bodyFor(msg);
    if (!body) return;
    beginVariant(msg);
    rerender(msg);
    retryBodies.set(msg.id, body);
    save();
    announce("Asking again. The earlier answer stays available.");
    runStream(msg, { body });
  }

  /** Edit the last question in place; sending it replaces the question and its answer. */
  function editMessage(msg) {
    const view = views.get(msg.id);
    if (active || !view || view.editing) return;
    view.editing = true;
    renderActions(msg, view);
    const form = el("form", "msg-edit");
    form.setAttribute("aria-label", "Edit the message");
    const area = el("textarea", "msg-edit-input");
    area.value = msg.content;
    area.rows = Math.min(8, Math.max(2, msg.content.split("\n").length));
    area.setAttribute("aria-label", "Message");
    const buttons = el("div", "msg-edit-actions");
    const cancel = el("button", "btn btn-small", "Cancel");
    cancel.type = "button";
    const sendBtn = el("button", "btn btn-small btn-primary", "Send");
    sendBtn.type = "submit";
    buttons.append(cancel, sendBtn);
    form.append(area, buttons);
    view.text.hidden = true;
    view.root.insertBefore(form, view.text.nextSibling);
    const close = () => {
      form.remove();
      view.text.hidden = false;
      view.editing = false;
      renderActions(msg, view);
    };
    cancel.addEventListener("click", () => {
      close();
      view.actions?.querySelector("button")?.focus();
    });
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        cancel.click();
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = area.value.trim();
      if (!text || active) return;
      const at = state.messages.indexOf(msg);
      if (at === -1) return close();
      for (const m of state.messages.slice(at)) retryBodies.delete(m.id);
      state.messages.splice(at);
      renderTranscript();
      sendText(text);
    });
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
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
    for (const b of els.transcript.querySelectorAll(".msg-error button.retry")) b.disabled = busy || b.textContent !== "Retry";
    refreshActions();
    onBusy(busy);
  }

  function send() {
    const text = els.input.value.trim();
    if (!text || active) return;
    els.input.value = "";
    sendText(text);
  }

  function sendText(text) {
    const body = { message: text, scenario: panel.current(), history: buildHistory(state.messages), mode: state.mode };
    toast.hide(); // an Undo of "New conversation" would now mix two conversations
    addMessage({ role: "user", content: text, status: "complete" });
    startAnswer(body);
  }

  function startAnswer(body) {
    const msg = addMessage({ role: "assistant", content: "", status: "streaming" });
    retryBodies.set(msg.id, body);
    save();
    runStream(msg, { body });
  }

  function retryMessage(msg) {
    if (active) return;
    const body = bodyFor(msg);
    if (!body) return;
    msg.retried = true;
    const view = views.get(msg.id);
    if (view) {
      if (msg.error) renderError(msg, view);
      else addNote(view, "Retried below.", "retried");
    }
    startAnswer(body);
  }

  /** Continue an interrupted or stopped answer from its last frame, if the server has it. */
  function resumeMessage(msg) {
    if (active || !msg.run) return;
    const seed = resumeState({
      scenario: panel.current(),
      text: msg.content,
      seq: msg.run.seq,
      intent: msg.intent,
      applied: Boolean(msg.changeSummary),
    });
    msg.status = "streaming";
    msg.error = undefined;
    rerender(msg);
    save();
    announce("Resuming the answer.");
    runStream(msg, { join: { runId: msg.run.id, after: msg.run.seq }, seed });
  }

  /** After a reload: join the run this tab was reading, if its answer is the last message. */
  function resumeAfterReload() {
    const plan = resumePlan(state.messages, loadRunRecord(session()));
    if (!plan) {
      clearRunRecord(session());
      return false;
    }
    const { msg, runId, after, seq } = plan;
    const seed = resumeState({ scenario: panel.current(), text: msg.content, seq, intent: msg.intent, applied: Boolean(msg.changeSummary) });
    if (msg.reasoning) seed.reasoning = { ...seed.reasoning, text: msg.reasoning.text || "", withheld: msg.reasoning.withheld, endedAt: msg.content ? 0 : null };
    msg.status = "streaming";
    msg.error = undefined;
    rerender(msg);
    follower.toEnd(true);
    runStream(msg, { join: { runId, after }, seed });
    return true;
  }

  /** Stop and Esc: tell the server to cancel the run (DELETE), then stop reading. */
  function stop() {
    if (!active) return;
    const run = active;
    if (run.runId) {
      cancelRun(run.runId);
      clearRunRecord(session(), run.runId);
      run.controller.abort();
      return;
    }
    // The response's headers (which name the run) have not come yet: they usually follow
    // within milliseconds, and then the DELETE goes out (onResponse). Without them, the fetch
    // is aborted anyway after a second, and the server cancels a run nobody reads after its
    // detached grace.
    if (run.stopRequested) return;
    run.stopRequested = true;
    setTimeout(() => run.controller.abort(), STOP_WAIT_MS);
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
    if (next.result && !prev.result && next.result.scenario) {
      panel.closeLive();
      const before = next.base;
      const summary = panel.accept(next.result.scenario, next.result.changes, "agent");
      const changes = next.result.changes || [];
      const title = typeof next.result.scenario.title === "string" ? next.result.scenario.title : "";
      msg.changeSummary = before ? summary || describeChanges(changes, { before, after: next.result.scenario }) || "—" : `created “${title}”`;
      msg.firstChange = changes[0] ? { op: changes[0].op, path: changes[0].path } : undefined;
      if (view) renderChangeSummary(msg, view);
      // The strip is below the text the last scroll showed: bring all of it into view.
      follower.toEnd();
      save();
    }
  }

  function showReconnecting(msg, on, attempt = 0) {
    const view = views.get(msg.id);
    if (!view) return;
    view.root.dataset.reconnecting = on ? "true" : "false";
    view.status.textContent = on ? "Reconnecting…" : statusLabel(msg);
    view.status.hidden = !view.status.textContent;
    if (on && attempt === 0) announce("The connection was lost. Reconnecting…");
  }

  /**
   * Read one answer to its end: POST `body` (or, with `join`, join run `join.runId` after frame
   * `join.after`, continuing from `seed`), and when the connection is lost mid-answer, join
   * again after the last frame applied, waiting as resume.js says, until `done` or the bound.
   */
  async function runStream(msg, { body = null, join = null, seed = null }) {
    const controller = new AbortController();
    const run = { controller, msg, runId: join ? join.runId : null, lastSeq: seed ? seed.seq : 0, retryMs: null, body };
    active = run;
    if (body) lastBody = body;
    setBusy(true);
    const record = inspector.begin(join ? "Rejoined" : "Streamed");
    const t0 = performance.now();
    const clock = () => performance.now() - t0;
    let s = seed || initialState({ scenario: body ? body.scenario ?? null : panel.current() });
    let requestId = null;
    let progressed = false; // a frame was applied since the last join began

    const onEvent = ({ type, data, id }) => {
      const t = clock();
      inspector.frame(record, "event", type, data, t, id);
      if (active !== run) return; // orphaned by New conversation
      const ref = parseEventId(id);
      if (ref && !run.runId) run.runId = ref.runId;
      const seq = ref && ref.runId === run.runId ? ref.seq : undefined;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        payload = null; // the inspector shows it; the frame still counts as read
      }
      const next = reduce(s, { type, data: payload, t, seq });
      if (next === s) return;
      const prev = s;
      s = next;
      if (seq !== undefined) {
        progressed = true;
        run.lastSeq = s.seq;
        // The text and the frame it ends with are saved together (saveSoon, save, pagehide).
        msg.run = { id: run.runId, seq: s.seq };
        saveRunRecord(session(), { runId: run.runId, lastEventId: id, msgId: msg.id });
      }
      applyState(msg, prev, next, active === run, t0);
    };
    const callbacks = {
      signal: controller.signal,
      onResponse: ({ requestId: rid, runId }) => {
        requestId = requestId || rid;
        if (runId && !run.runId) run.runId = runId;
        if (run.stopRequested && active === run) {
          if (run.runId) cancelRun(run.runId);
          run.controller.abort();
          return;
        }
        if (run.runId && active === run) {
          if (!msg.run) msg.run = { id: run.runId, seq: s.seq };
          saveRunRecord(session(), { runId: run.runId, lastEventId: lastEventId(run.runId, s.seq), msgId: msg.id });
        }
        inspector.headers(record, clock(), rid);
        showReconnecting(msg, false);
      },
      onEvent,
      onComment: ({ text }) => inspector.frame(record, "comment", "comment", text, clock()),
      onRetry: (ms) => {
        run.retryMs = ms;
      },
    };

    let outcome = null;
    let error = null;
    let after = join ? join.after : null; // null: the first request is the POST
    if (join) inspector.resumed(record, lastEventId(join.runId, join.after), 0);
    for (let attempt = 0; outcome === null; ) {
      let lost = null;
      try {
        progressed = false;
        const res =
          after === null
            ? await withAuth(() => streamAgent(body, callbacks))
            : await withAuth(() => joinRun(run.runId, after, callbacks));
        requestId = requestId || res.requestId;
        if (res.status === 204) {
          // The server no longer has the run (finished long ago, expired, or restarted).
          gone.add(run.runId);
          outcome = "interrupted";
          error = { code: "run_gone", message: "The server no longer has this answer, so it cannot be resumed. The text so far is kept; Retry asks again.", retryable: true };
        } else if (s.error) {
          outcome = s.error.code === "cancelled" ? "stopped" : "error";
          error = outcome === "error" ? s.error : null;
        } else if (s.done) {
          outcome = "complete";
        } else {
          lost = new ApiError({ code: "incomplete", message: "The stream ended before the answer was finished. The text so far is kept.", retryable: true });
        }
      } catch (err) {
        if (isAbort(err, controller.signal)) outcome = "stopped";
        else if (err instanceof ApiError && err.code === "network") lost = err;
        else {
          outcome = "error";
          error =
            err instanceof ApiError
              ? { code: err.code, message: err.message, retryable: err.retryable, retryAfter: err.retryAfter, requestId: err.requestId }
              : { code: "client", message: `Unexpected problem in the page: ${err && err.message}`, retryable: true };
        }
      }
      if (outcome !== null || leaving) break;
      // The connection was lost mid-answer. A run the server keeps can be joined again.
      if (!run.runId || active !== run) {
        outcome = "error";
        error = { code: lost.code, message: lost.message, retryable: true };
        break;
      }
      if (progressed) attempt = 0;
      const delay = reconnectDelay(attempt, run.retryMs);
      if (delay === null) {
        outcome = "interrupted";
        error = { code: lost.code === "incomplete" ? "incomplete" : "network", message: LOST_MESSAGE, retryable: true };
        break;
      }
      showReconnecting(msg, true, attempt);
      attempt += 1;
      if (!(await sleep(delay, controller.signal))) {
        outcome = "stopped";
        break;
      }
      if (leaving) break;
      after = run.lastSeq;
      inspector.resumed(record, lastEventId(run.runId, after), clock());
    }
    // The page is going away mid-answer: the run, its record and the saved text are left for
    // the next page to join (pagehide saved them).
    if (leaving) return;

    if (error && !error.requestId && (requestId || s.requestId)) error.requestId = requestId || s.requestId;
    if (error && error.code === "budget_exhausted") health.budgetExhausted(error);
    if (outcome !== "interrupted" && run.runId) clearRunRecord(session(), run.runId);
    const owns = active === run;
    if (owns && (s.block.open || s.preview) && !(s.result && s.result.scenario)) {
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
    finishAnswer(run, outcome, error);
    const detail =
      outcome === "complete"
        ? s.done && s.done.finish_reason
          ? `${s.done.finish_reason}${s.done.timings && typeof s.done.timings.ttft_ms === "number" ? `; server-side first token ${Math.round(s.done.timings.ttft_ms)} ms` : ""}`
          : "done"
        : error
          ? `${error.code}`
          : "";
    inspector.end(record, outcome === "complete" ? "done" : outcome, detail, s.done && s.done.timings);
    health.refresh();
  }

  function finishAnswer(run, outcome, error) {
    const msg = run.msg;
    msg.status = outcome;
    msg.error = error || undefined;
    const view = views.get(msg.id);
    if (view) {
      view.root.dataset.status = outcome;
      view.root.dataset.reconnecting = "false";
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
      if (error) renderError(msg, view);
      else if (view.errorBox) {
        view.errorBox.remove();
        view.errorBox = null;
      }
    }
    if (active === run) {
      active = null;
      setBusy(false);
    } else if (view) {
      renderActions(msg, view);
    }
    save();
    // The answer's last lines, its change strip and its actions: all in view.
    follower.toEnd();
    if (outcome === "complete") announce(msg.cutOff ? "Answer complete, cut off by the output limit." : "Answer complete.");
    else if (outcome === "stopped") announce("Stopped. The partial answer is kept.");
    else if (outcome === "interrupted") announce("The connection to the server was lost. The partial answer is kept.");
    else announce(`Error: ${error ? errorMessage(error) : "the request failed"}`);
    if (document.activeElement === els.stop || document.activeElement === document.body) els.input.focus();
  }

  function newConversation() {
    if (active) {
      // The run is cancelled on the server; its fetch ends a moment later and, no longer
      // owning the page, only finishes its own (removed) message.
      const run = active;
      if (run.runId) {
        cancelRun(run.runId);
        clearRunRecord(session(), run.runId);
      }
      run.controller.abort();
      active = null;
      setBusy(false);
    }
    const removed = state.messages;
    if (!removed.length) return;
    const bodies = new Map(retryBodies);
    state.messages = [];
    retryBodies.clear();
    renderTranscript();
    save();
    announce("New conversation started. The scenario is kept. Undo brings the conversation back.");
    toast.show(`Conversation cleared (${removed.length} message${removed.length === 1 ? "" : "s"}).`, {
      label: "Undo",
      onAction: () => {
        if (state.messages.length || active) return;
        state.messages = removed;
        for (const [k, v] of bodies) retryBodies.set(k, v);
        renderTranscript();
        save();
        announce("The conversation is back.");
        els.input.focus();
      },
    });
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
    resumeAfterReload,
    /** The page is being unloaded: a running answer is left for the next page to join. */
    leave() {
      leaving = true;
    },
    get busy() {
      return Boolean(active);
    },
    get lastBody() {
      return lastBody;
    },
  };
}
