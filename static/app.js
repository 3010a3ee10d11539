// The page: wires the conversation, the scenario panel and the inspector to
// api.js. Model text only ever enters the DOM through text nodes and
// textContent (never innerHTML), and no element.style is set anywhere: the
// page runs under a strict Content-Security-Policy.

import { ApiError, bufferedAgent, getHealth, getToken, isAbort, setToken, streamAgent } from "./api.js";
import { checkScenarioText, diff, validateScenario } from "./json-tools.js";
import { createInspector } from "./inspector.js";
import { changeTarget, createPreview, describeChange, describeChanges, el, highlightChanges, renderScenario } from "./scenario-view.js";
import {
  buildHistory,
  canRedo,
  canUndo,
  currentScenario,
  loadState,
  newId,
  pushVersion,
  saveState,
} from "./store.js";

const $ = (id) => document.getElementById(id);

const els = {
  modelStatus: $("model-status"),
  modelName: $("model-name"),
  offlineNote: $("offline-note"),
  transcript: $("transcript"),
  transcriptEmpty: $("transcript-empty"),
  composer: $("composer"),
  input: $("composer-input"),
  mode: $("mode"),
  send: $("send"),
  stop: $("stop"),
  newConversation: $("new-conversation"),
  versionLabel: $("version-label"),
  sampleSelect: $("sample-select"),
  loadSample: $("load-sample"),
  undo: $("undo"),
  redo: $("redo"),
  importBtn: $("import-btn"),
  importFile: $("import-file"),
  exportBtn: $("export"),
  notice: $("scenario-notice"),
  tabView: $("tab-view"),
  tabJson: $("tab-json"),
  panelView: $("panel-view"),
  panelJson: $("panel-json"),
  liveWrap: $("live-wrap"),
  liveJson: $("live-json"),
  changesSummary: $("changes-summary"),
  view: $("scenario-view"),
  editor: $("json-editor"),
  jsonStatus: $("json-status"),
  applyJson: $("apply-json"),
  formatJson: $("format-json"),
  revertJson: $("revert-json"),
  gotoError: $("goto-error"),
  compare: $("compare"),
  announcer: $("announcer"),
  tokenDialog: $("token-dialog"),
  tokenForm: $("token-form"),
  tokenInput: $("token-input"),
  tokenError: $("token-error"),
  tokenCancel: $("token-cancel"),
};

const state = loadState();
const inspector = createInspector($("inspector"));
const preview = createPreview(els.liveJson);
const views = new Map(); // message id -> {root, text, textNode, caret, status, errorBox}
const retryBodies = new Map(); // assistant message id -> request body it answered

let active = null; // the request in flight: {controller, msg}
let comparing = null; // AbortController of a buffered comparison
let lastBody = null; // body of the last streamed request, for "Compare with buffered"
let editorDirty = false;

// ---------------------------------------------------------------------------
// small helpers

function announce(text) {
  // A polite live region used for milestones only (never per token).
  els.announcer.textContent = text;
}

let saveTimer = null;
function save() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (!saveState(state)) console.warn("Could not save to localStorage (full or disabled).");
}
/** Save at most once a second (used while tokens stream in). */
function saveSoon() {
  if (saveTimer) return;
  saveTimer = setTimeout(save, 1000);
}

const pretty = (value) => JSON.stringify(value, null, 2);

// ---------------------------------------------------------------------------
// header: which model is answering

function showModel(model, provider) {
  els.modelStatus.dataset.provider = provider || "unknown";
  if (provider === "offline") {
    els.modelName.textContent = `${model || "offline model"} · built-in offline model`;
    els.offlineNote.hidden = false;
  } else if (provider) {
    els.modelName.textContent = `${model} · ${provider}`;
    els.offlineNote.hidden = true;
  } else {
    els.modelName.textContent = model;
    els.offlineNote.hidden = true;
  }
}

async function refreshHealth() {
  try {
    const h = await withAuth(() => getHealth());
    showModel(h.model, h.provider);
  } catch (err) {
    els.modelStatus.dataset.provider = "down";
    els.modelName.textContent =
      err instanceof ApiError && err.code === "unauthorized" ? "Access token needed" : "Server not reachable";
  }
}

// ---------------------------------------------------------------------------
// access token: asked once (a small form), kept in sessionStorage

let tokenRequest = null;

function askForToken(rejected) {
  if (tokenRequest) return tokenRequest;
  tokenRequest = new Promise((resolve) => {
    els.tokenError.hidden = !rejected;
    els.tokenError.textContent = rejected ? "That token was not accepted. Check it and try again." : "";
    els.tokenInput.value = "";
    const done = (ok) => {
      els.tokenForm.removeEventListener("submit", onSubmit);
      els.tokenCancel.removeEventListener("click", onCancel);
      els.tokenDialog.removeEventListener("cancel", onCancel);
      if (els.tokenDialog.open) els.tokenDialog.close();
      tokenRequest = null;
      resolve(ok);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      const token = els.tokenInput.value.trim();
      if (!token) {
        els.tokenError.hidden = false;
        els.tokenError.textContent = "Enter the access token.";
        els.tokenInput.focus();
        return;
      }
      setToken(token);
      done(true);
    };
    const onCancel = (e) => {
      e.preventDefault();
      done(false);
    };
    els.tokenForm.addEventListener("submit", onSubmit);
    els.tokenCancel.addEventListener("click", onCancel);
    els.tokenDialog.addEventListener("cancel", onCancel);
    els.tokenDialog.showModal();
    els.tokenInput.focus();
  });
  return tokenRequest;
}

/** Run an API call; on 401 `unauthorized`, ask for the token and try again. */
async function withAuth(call) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401 || err.code !== "unauthorized" || attempt >= 5) throw err;
      const hadToken = Boolean(getToken());
      if (hadToken) setToken(null);
      const ok = await askForToken(hadToken);
      if (!ok) {
        throw new ApiError({
          code: "unauthorized",
          status: 401,
          message: "This server needs an access token. Retry to enter it.",
          retryable: true,
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------
// the conversation

function statusLabel(msg) {
  if (msg.status === "stopped") return "Stopped";
  if (msg.status === "error") return "Failed";
  return "";
}

/** A finished answer without the blank lines it may end with. */
const displayText = (text) => text.replace(/\n\s*$/, "");

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
  const textNode = document.createTextNode(msg.status === "streaming" ? msg.content : displayText(msg.content));
  text.appendChild(textNode);
  const caret = el("span", "caret");
  caret.setAttribute("aria-hidden", "true");
  if (msg.status === "streaming") {
    text.appendChild(caret);
    root.setAttribute("aria-busy", "true");
  }
  root.appendChild(text);
  const view = { root, text, textNode, caret, status, intent, errorBox: null };
  views.set(msg.id, view);
  if (msg.status === "error" && msg.error) renderError(msg, view);
  return root;
}

function renderTranscript() {
  views.clear();
  const frag = document.createDocumentFragment();
  for (const msg of state.messages) frag.appendChild(renderMessage(msg));
  els.transcript.replaceChildren(els.transcriptEmpty, frag);
  els.transcriptEmpty.hidden = state.messages.length > 0;
  scrollToEnd(true);
}

function addMessage(fields) {
  const msg = { id: newId(), content: "", status: "complete", ...fields };
  state.messages.push(msg);
  els.transcript.appendChild(renderMessage(msg));
  els.transcriptEmpty.hidden = true;
  scrollToEnd(true);
  return msg;
}

// Follow the answer while the reader is at the bottom; leave them alone if
// they scrolled up. The scroll is done once per animation frame at most.
let stickToBottom = true;
let scrollScheduled = false;
els.transcript.addEventListener("scroll", () => {
  const t = els.transcript;
  stickToBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
});
function scrollToEnd(force = false) {
  if (force) stickToBottom = true;
  if (scrollScheduled || !stickToBottom) return;
  scrollScheduled = true;
  requestAnimationFrame(() => {
    scrollScheduled = false;
    if (stickToBottom) els.transcript.scrollTop = els.transcript.scrollHeight;
  });
}

/** Per-token work: extend one text node, nothing else. */
function appendText(msg, piece) {
  msg.content += piece;
  views.get(msg.id)?.textNode.appendData(piece);
  scrollToEnd();
  saveSoon();
}

function renderError(msg, view) {
  if (view.errorBox) view.errorBox.remove();
  const box = el("div", "msg-error");
  box.setAttribute("role", "alert");
  const e = msg.error;
  box.appendChild(el("p", "msg-error-text", e.message || "Something went wrong."));
  const details = [];
  if (e.code) details.push(`code ${e.code}`);
  if (e.requestId) details.push(`request ${e.requestId}`);
  if (details.length) box.appendChild(el("p", "msg-error-detail", details.join(" · ")));
  if (msg.retried) {
    box.appendChild(el("p", "msg-error-detail", "Retried below."));
  } else {
    const retry = el("button", "btn btn-small", "Retry");
    retry.type = "button";
    retry.className = "btn btn-small retry";
    retry.addEventListener("click", () => retryMessage(msg));
    box.appendChild(retry);
    if (e.retryAfter && e.retryAfter > 0) countdown(retry, Math.ceil(e.retryAfter));
  }
  view.root.appendChild(box);
  view.errorBox = box;
}

function countdown(button, seconds) {
  button.disabled = true;
  const tick = () => {
    if (seconds <= 0) {
      button.disabled = false;
      button.textContent = "Retry";
      return;
    }
    button.textContent = `Retry in ${seconds} s`;
    seconds -= 1;
    setTimeout(tick, 1000);
  };
  tick();
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.disabled = !busy;
  document.body.classList.toggle("is-streaming", busy);
  for (const b of els.transcript.querySelectorAll("button.retry")) b.disabled = busy || b.textContent !== "Retry";
}

function send() {
  const text = els.input.value.trim();
  if (!text || active) return;
  const body = {
    message: text,
    scenario: currentScenario(state),
    history: buildHistory(state.messages),
    mode: state.mode,
  };
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
      scenario: currentScenario(state),
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

/** Turn a server `error` event payload into the same shape as ApiError. */
function eventError(p) {
  return {
    code: typeof p.code === "string" ? p.code : "error",
    message: typeof p.message === "string" ? p.message : "The agent reported an error.",
    retryable: p.retryable !== false,
    retryAfter: typeof p.retry_after === "number" ? p.retry_after : null,
  };
}

async function runStream(msg, body) {
  const controller = new AbortController();
  active = { controller, msg };
  lastBody = body;
  setBusy(true);
  els.compare.disabled = true;
  const record = inspector.begin();

  let streamError = null;
  let done = null;
  let requestId = null;
  let liveOpen = false;
  let gotScenario = false;

  const onEvent = ({ type, data, t }) => {
    inspector.frame(record, "event", type, data, t);
    if (active?.msg !== msg) return;
    let p;
    try {
      p = JSON.parse(data);
    } catch {
      return; // the inspector shows it; nothing else to do with it
    }
    if (!p || typeof p !== "object") return;
    switch (type) {
      case "start": {
        msg.intent = typeof p.intent === "string" ? p.intent : undefined;
        const v = views.get(msg.id);
        if (v && msg.intent) {
          v.intent.textContent = msg.intent;
          v.intent.hidden = false;
        }
        if (p.model || p.provider) showModel(p.model, p.provider);
        if (p.request_id) requestId = p.request_id;
        break;
      }
      case "chat":
        if (typeof p.content === "string" && p.content) appendText(msg, p.content);
        break;
      case "scenario_delta":
        if (typeof p.content !== "string") break;
        if (!liveOpen) {
          liveOpen = true;
          openLive();
        }
        preview.append(p.content);
        break;
      case "scenario":
        liveOpen = false;
        closeLive();
        if (p.scenario && typeof p.scenario === "object") {
          gotScenario = true;
          acceptScenario(p.scenario, Array.isArray(p.changes) ? p.changes : diff(currentScenario(state), p.scenario), "agent");
        }
        break;
      case "error":
        streamError = eventError(p);
        if (streamError.code === "invalid_scenario" || liveOpen) {
          liveOpen = false;
          closeLive();
          showNotice(
            streamError.code === "invalid_scenario"
              ? "The agent's new version was not a valid scenario, so the current scenario is unchanged."
              : "The new version did not finish arriving; the current scenario is unchanged.",
            "error",
          );
        }
        break;
      case "done":
        done = p;
        break;
      default:
        break;
    }
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
    if (streamError) {
      outcome = "error";
      error = streamError;
    } else if (!done) {
      outcome = "error";
      error = {
        code: "incomplete",
        message: "The stream ended before the answer was finished. The text so far is kept.",
        retryable: true,
      };
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
  if (error && !error.requestId && requestId) error.requestId = requestId;
  // A run orphaned by "New conversation" must not touch a newer run's preview.
  const ownsPage = !active || active.msg === msg;
  if (liveOpen && ownsPage) {
    closeLive();
    if (!gotScenario && outcome !== "error") {
      showNotice(
        outcome === "stopped"
          ? "Stopped before the new version was complete; the current scenario is unchanged."
          : "No new version arrived; the current scenario is unchanged.",
        "info",
      );
    }
  }
  finishAnswer(msg, outcome, error);
  const detail =
    outcome === "complete"
      ? done && done.finish_reason
        ? `${done.finish_reason}${done.timings && typeof done.timings.ttft_ms === "number" ? `; server-side first token ${Math.round(done.timings.ttft_ms)} ms` : ""}`
        : "done"
      : error
        ? `${error.code}`
        : "";
  inspector.end(record, outcome === "complete" ? "done" : outcome === "stopped" ? "stopped" : "error", detail, done && done.timings);
}

function finishAnswer(msg, outcome, error) {
  msg.status = outcome;
  if (error) msg.error = error;
  const view = views.get(msg.id);
  if (view) {
    view.root.dataset.status = outcome;
    view.root.removeAttribute("aria-busy");
    view.caret.remove();
    // Trailing blank lines (the text before a scenario block often ends in some) are
    // only dropped from the display; the saved text is unchanged.
    const trimmed = displayText(view.textNode.data);
    if (trimmed !== view.textNode.data) view.textNode.data = trimmed;
    view.status.textContent = statusLabel(msg);
    view.status.hidden = !view.status.textContent;
    if (outcome === "error") renderError(msg, view);
  }
  if (active && active.msg === msg) {
    active = null;
    setBusy(false);
    els.compare.disabled = !lastBody;
  }
  save();
  if (outcome === "complete") announce("Answer complete.");
  else if (outcome === "stopped") announce("Stopped. The partial answer is kept.");
  else announce(`Error: ${error ? error.message : "the request failed"}`);
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

// ---------------------------------------------------------------------------
// the scenario panel

function showNotice(text, kind = "info") {
  els.notice.textContent = text;
  els.notice.dataset.kind = kind;
  els.notice.hidden = !text;
}

function openLive() {
  preview.reset();
  els.liveWrap.hidden = false;
  selectTab("view", false);
  els.panelView.scrollTop = 0;
  showNotice("");
  document.body.classList.add("scenario-forming");
}

function closeLive() {
  els.liveWrap.hidden = true;
  preview.reset();
  document.body.classList.remove("scenario-forming");
}

/** Show the current version; highlight `changes` when given. */
function renderCurrent(changes = []) {
  const scenario = currentScenario(state);
  renderScenario(els.view, scenario);
  const hits = highlightChanges(els.view, changes);
  if (hits.length) revealInPanel(hits[0]);
  renderChangesSummary(changes, hits);
  const n = state.versions.length;
  els.versionLabel.textContent = n ? `Version ${state.index + 1} of ${n}` : "No versions yet";
  els.undo.disabled = !canUndo(state);
  els.redo.disabled = !canRedo(state);
  els.exportBtn.disabled = !scenario;
  if (!editorDirty) {
    els.editor.value = scenario ? pretty(scenario) : "";
    validateEditor();
  } else {
    setJsonStatus("info", "A new version is shown in View; your unsaved edits here are kept. Revert to load it.");
  }
}

/** "What changed: [changed title] [added roles #6]": each item jumps to its highlight. */
function renderChangesSummary(changes, hits) {
  els.changesSummary.replaceChildren();
  els.changesSummary.hidden = hits.length === 0;
  if (!hits.length) return;
  els.changesSummary.appendChild(el("span", "changes-label", "What changed:"));
  const shown = changes.slice(0, 8);
  for (const change of shown) {
    const button = el("button", "change-link", describeChange(change));
    button.type = "button";
    button.addEventListener("click", () => {
      const found = changeTarget(els.view, change);
      if (!found) return;
      if (els.panelView.scrollHeight > els.panelView.clientHeight) revealInPanel(found.element, true);
      else found.element.scrollIntoView({ block: "center" });
    });
    els.changesSummary.appendChild(button);
  }
  if (changes.length > shown.length) els.changesSummary.appendChild(el("span", "", `and ${changes.length - shown.length} more`));
}

/** Scroll the scenario panel (not the page) so `node` is in view, when the panel scrolls. */
function revealInPanel(node, always = false) {
  const panel = els.panelView;
  if (panel.hidden || panel.scrollHeight <= panel.clientHeight) return;
  requestAnimationFrame(() => {
    const offset = node.getBoundingClientRect().top - panel.getBoundingClientRect().top;
    if (always || offset < 0 || offset > panel.clientHeight - 40) panel.scrollTop += offset - 48;
  });
}

function acceptScenario(scenario, changes, source) {
  pushVersion(state, scenario, changes, source);
  renderCurrent(changes);
  save();
  const summary = describeChanges(changes);
  announce(`Scenario updated${summary ? `: ${summary}` : ""}.`);
}

function undo() {
  if (!canUndo(state)) return;
  const from = currentScenario(state);
  state.index -= 1;
  editorDirty = false;
  renderCurrent(diff(from, currentScenario(state)));
  showNotice(`Back to version ${state.index + 1}.`);
  save();
}

function redo() {
  if (!canRedo(state)) return;
  const from = currentScenario(state);
  state.index += 1;
  editorDirty = false;
  renderCurrent(diff(from, currentScenario(state)));
  showNotice(`Forward to version ${state.index + 1}.`);
  save();
}

// ---- samples

async function loadSampleIndex() {
  try {
    const res = await fetch("/samples/index.json", { cache: "no-cache" });
    if (!res.ok) throw new Error(String(res.status));
    const list = await res.json();
    if (!Array.isArray(list)) throw new Error("not a list");
    for (const s of list) {
      if (!s || typeof s.file !== "string") continue;
      const opt = document.createElement("option");
      opt.value = s.file;
      opt.textContent = typeof s.title === "string" ? s.title : s.file;
      els.sampleSelect.appendChild(opt);
    }
    els.loadSample.disabled = false;
  } catch {
    els.sampleSelect.disabled = true;
    els.sampleSelect.options[0].textContent = "No samples available";
    els.loadSample.disabled = true;
  }
}

async function loadSample() {
  const file = els.sampleSelect.value;
  if (!file) {
    showNotice("Choose a sample first.", "info");
    els.sampleSelect.focus();
    return;
  }
  try {
    const path = file.split("/").map(encodeURIComponent).join("/");
    const res = await fetch(`/samples/${path}`, { cache: "no-cache" });
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    const check = checkScenarioText(await res.text());
    if (!check.ok) throw new Error(check.syntax ? check.syntax.message : check.errors[0].message);
    editorDirty = false;
    acceptScenario(check.value, [], "sample");
    showNotice(`Loaded the sample “${check.value.title}”.`);
  } catch (err) {
    showNotice(`Could not load the sample: ${err.message}`, "error");
  }
}

// ---- import / export

async function importFile(file) {
  if (!file) return;
  if (file.size > 1024 * 1024) {
    showNotice("That file is too large to be a scenario (over 1 MiB).", "error");
    return;
  }
  const text = await file.text();
  const check = checkScenarioText(text);
  if (check.syntax) {
    const s = check.syntax;
    showNotice(`${file.name} is not valid JSON: line ${s.line}, column ${s.column}: ${s.message}.`, "error");
    return;
  }
  if (!check.ok) {
    showNotice(`${file.name} is not a usable scenario: ${check.errors.map((e) => e.message).join("; ")}.`, "error");
    return;
  }
  editorDirty = false;
  acceptScenario(check.value, [], "import");
  showNotice(`Imported ${file.name}.`);
}

function exportScenario() {
  const scenario = currentScenario(state);
  if (!scenario) return;
  const blob = new Blob([pretty(scenario) + "\n"], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  const slug = String(scenario.title || "scenario")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
  a.href = url;
  a.download = `${slug || "scenario"}.json`;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  showNotice(`Exported ${a.download}.`);
}

// ---- JSON editor

let lastCheck = null;

function setJsonStatus(kind, text) {
  els.jsonStatus.dataset.kind = kind;
  els.jsonStatus.textContent = text;
}

function validateEditor() {
  const text = els.editor.value;
  els.gotoError.hidden = true;
  if (!text.trim()) {
    lastCheck = null;
    els.applyJson.disabled = true;
    setJsonStatus("info", currentScenario(state) ? "The editor is empty." : "Paste or type a scenario as JSON, then Apply.");
    return;
  }
  const check = checkScenarioText(text);
  lastCheck = check;
  if (check.syntax) {
    const s = check.syntax;
    setJsonStatus("error", `JSON syntax error at line ${s.line}, column ${s.column}: ${s.message}.`);
    els.gotoError.hidden = false;
  } else if (!check.ok) {
    setJsonStatus("error", check.errors.map((e) => e.message).join("; ") + ".");
  } else if (check.warnings.length) {
    setJsonStatus("warn", `Valid, with notes: ${check.warnings.map((w) => w.message).join("; ")}.`);
  } else {
    setJsonStatus("ok", editorDirty ? "Valid scenario. Apply to save it as a new version." : "Valid scenario.");
  }
  els.applyJson.disabled = !check.ok || !editorDirty;
}

let validateTimer = null;
function onEditorInput() {
  editorDirty = true;
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateEditor, 150);
}

function applyEditor() {
  validateEditor();
  if (!lastCheck || !lastCheck.ok) return;
  const before = currentScenario(state);
  const changes = diff(before, lastCheck.value);
  if (before && changes.length === 0) {
    editorDirty = false;
    validateEditor();
    setJsonStatus("ok", "No changes to apply.");
    return;
  }
  editorDirty = false;
  acceptScenario(lastCheck.value, before ? changes : [], "edit");
  setJsonStatus("ok", `Applied as version ${state.index + 1}.`);
}

function formatEditor() {
  const check = checkScenarioText(els.editor.value);
  if (check.syntax) {
    validateEditor();
    return;
  }
  els.editor.value = pretty(check.value);
  onEditorInput();
}

function revertEditor() {
  editorDirty = false;
  const scenario = currentScenario(state);
  els.editor.value = scenario ? pretty(scenario) : "";
  validateEditor();
}

function gotoError() {
  if (!lastCheck || !lastCheck.syntax) return;
  const at = lastCheck.syntax.offset;
  els.editor.focus();
  els.editor.setSelectionRange(at, Math.min(at + 1, els.editor.value.length));
}

// ---- tabs (View / JSON), arrow keys move between them

function selectTab(which, focus = true) {
  const isView = which === "view";
  els.tabView.setAttribute("aria-selected", String(isView));
  els.tabJson.setAttribute("aria-selected", String(!isView));
  els.tabView.tabIndex = isView ? 0 : -1;
  els.tabJson.tabIndex = isView ? -1 : 0;
  els.panelView.hidden = !isView;
  els.panelJson.hidden = isView;
  if (focus) (isView ? els.tabView : els.tabJson).focus();
}

// ---------------------------------------------------------------------------
// buffered comparison

async function compareBuffered() {
  if (!lastBody || active || comparing) return;
  comparing = new AbortController();
  els.compare.disabled = true;
  els.compare.textContent = "Comparing…";
  inspector.beginBuffered();
  try {
    const r = await withAuth(() =>
      bufferedAgent(lastBody, { signal: comparing.signal, onChunk: ({ t }) => inspector.bufferedChunk(t) }),
    );
    inspector.endBuffered({ tHeaders: r.tHeaders, tDone: r.tDone, requestId: r.requestId, ok: true });
    announce(`Buffered answer arrived after ${Math.round(r.tDone)} ms.`);
  } catch (err) {
    inspector.endBuffered({ ok: false, detail: err && err.code });
    announce(`The buffered request failed: ${err && err.message}`);
  } finally {
    comparing = null;
    els.compare.textContent = "Compare with buffered";
    els.compare.disabled = !lastBody || Boolean(active);
  }
}

// ---------------------------------------------------------------------------
// events

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
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && active && !els.tokenDialog.open) {
    e.preventDefault();
    stop();
  }
});
els.mode.addEventListener("change", () => {
  state.mode = els.mode.value;
  save();
});
els.newConversation.addEventListener("click", newConversation);

els.loadSample.addEventListener("click", loadSample);
els.undo.addEventListener("click", undo);
els.redo.addEventListener("click", redo);
els.importBtn.addEventListener("click", () => els.importFile.click());
els.importFile.addEventListener("change", () => {
  importFile(els.importFile.files[0]).finally(() => {
    els.importFile.value = "";
  });
});
els.exportBtn.addEventListener("click", exportScenario);

els.editor.addEventListener("input", onEditorInput);
els.applyJson.addEventListener("click", applyEditor);
els.formatJson.addEventListener("click", formatEditor);
els.revertJson.addEventListener("click", revertEditor);
els.gotoError.addEventListener("click", gotoError);

els.tabView.addEventListener("click", () => selectTab("view"));
els.tabJson.addEventListener("click", () => selectTab("json"));
for (const tab of [els.tabView, els.tabJson]) {
  tab.addEventListener("keydown", (e) => {
    if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(e.key)) {
      e.preventDefault();
      const toView = e.key === "Home" || (e.key !== "End" && tab === els.tabJson);
      selectTab(toView ? "view" : "json");
    }
  });
}

els.compare.addEventListener("click", compareBuffered);

// Other tabs of the same page: keep versions in step when they save.
window.addEventListener("storage", (e) => {
  if (e.key !== "scenario-agent:v1" || active) return;
  const fresh = loadState();
  state.versions = fresh.versions;
  state.index = fresh.index;
  renderCurrent([]);
});

// ---------------------------------------------------------------------------
// start

function init() {
  els.mode.value = ["auto", "explain", "modify", "create", "chat"].includes(state.mode) ? state.mode : "auto";
  state.mode = els.mode.value;
  renderTranscript();
  const current = currentScenario(state);
  if (current && validateScenario(current).errors.length) console.warn("The saved scenario has problems:", validateScenario(current).errors);
  renderCurrent(state.index >= 0 ? state.versions[state.index].changes : []);
  setBusy(false);
  els.compare.disabled = true;
  loadSampleIndex();
  refreshHealth();
  document.body.dataset.ready = "true";
}

init();
