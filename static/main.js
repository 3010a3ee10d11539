// The composition root: finds the page's elements, builds each feature with what it needs, and
// starts them. No feature logic lives here.
//
//   health.js          the header: model, server health, a spent token budget
//   auth.js            the access-token dialog and withAuth()
//   scenario-panel.js  versions, preview, samples, import/export, JSON editor
//   conversation.js    messages, the streamed answer (reducer.js + markdown-view.js), its
//                      resume (resume.js) and its actions (copy, regenerate, retry, edit)
//   comparison.js      "Compare with buffered"
//   inspector.js       timings, frames and the timeline
//   keys.js            the composer's hint for the input device; Ctrl/Cmd+Z for the scenario
//   toast.js           the Undo toast of "New conversation"
//
// Load order: index.html loads this module only; imports bring in the rest. The "Streaming lab"
// panel (static/lab.js, static/lab.css) is loaded by index.html on its own and fills
// <section id="lab-panel">; it does not depend on anything here.

import { createAuth } from "./auth.js";
import { createComparison } from "./comparison.js";
import { copyText, createConversation } from "./conversation.js";
import { createHealth } from "./health.js";
import { createInspector } from "./inspector.js";
import { TOUCH_QUERY, composerHint, shortcutAction } from "./keys.js";
import { createScenarioPanel } from "./scenario-panel.js";
import { loadState, saveState } from "./store.js";
import { createToast } from "./toast.js";

const $ = (id) => document.getElementById(id);
const MODES = ["auto", "explain", "modify", "create", "chat"];

function elements() {
  const ids = {
    modelStatus: "model-status",
    modelName: "model-name",
    healthStatus: "health-status",
    budgetNote: "budget-note",
    offlineNote: "offline-note",
    transcript: "transcript",
    transcriptEmpty: "transcript-empty",
    composer: "composer",
    input: "composer-input",
    mode: "mode",
    send: "send",
    stop: "stop",
    newConversation: "new-conversation",
    versionLabel: "version-label",
    sampleSelect: "sample-select",
    loadSample: "load-sample",
    undo: "undo",
    redo: "redo",
    importBtn: "import-btn",
    importFile: "import-file",
    exportBtn: "export",
    copyJson: "copy-json",
    hint: "composer-hint",
    toast: "toast",
    toastText: "toast-text",
    toastAction: "toast-action",
    notice: "scenario-notice",
    tabView: "tab-view",
    tabJson: "tab-json",
    panelView: "panel-view",
    panelJson: "panel-json",
    liveWrap: "live-wrap",
    liveJson: "live-json",
    changesSummary: "changes-summary",
    view: "scenario-view",
    editor: "json-editor",
    jsonStatus: "json-status",
    applyJson: "apply-json",
    formatJson: "format-json",
    revertJson: "revert-json",
    gotoError: "goto-error",
    compare: "compare",
    announcer: "announcer",
    tokenDialog: "token-dialog",
    tokenForm: "token-form",
    tokenInput: "token-input",
    tokenError: "token-error",
    tokenCancel: "token-cancel",
  };
  const els = {};
  for (const [name, id] of Object.entries(ids)) els[name] = $(id);
  return els;
}

function main() {
  const els = elements();
  const state = loadState();

  // A polite live region for milestones only (never per token).
  const announce = (text) => {
    els.announcer.textContent = text;
  };
  let saveTimer = null;
  const save = () => {
    clearTimeout(saveTimer);
    saveTimer = null;
    if (!saveState(state)) console.warn("Could not save to localStorage (full or disabled).");
  };
  // At most once a second while tokens stream in.
  const saveSoon = () => {
    if (!saveTimer) saveTimer = setTimeout(save, 1000);
  };

  const auth = createAuth(els);
  const health = createHealth(els, { withAuth: auth.withAuth });
  const inspector = createInspector($("inspector"));
  const panel = createScenarioPanel({ els, state, save, announce, copyText });
  const toast = createToast(els);
  let comparison = null;
  const conversation = createConversation({
    els,
    state,
    save,
    saveSoon,
    announce,
    panel,
    inspector,
    health,
    withAuth: auth.withAuth,
    toast,
    onBusy: () => comparison && comparison.refresh(),
  });
  comparison = createComparison({
    button: els.compare,
    inspector,
    withAuth: auth.withAuth,
    announce,
    lastBody: () => conversation.lastBody,
    busy: () => conversation.busy,
  });

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && conversation.busy && !els.tokenDialog.open) {
      e.preventDefault();
      conversation.stop();
      return;
    }
    const action = shortcutAction(e, { dialogOpen: els.tokenDialog.open });
    if (action && !conversation.busy) {
      e.preventDefault();
      if (action === "undo") panel.undo();
      else panel.redo();
    }
  });

  // The hint names only keys the device has: none on a touch screen (no Esc, no Shift+Enter).
  const touch = window.matchMedia(TOUCH_QUERY);
  const showHint = () => {
    const text = composerHint(touch.matches);
    els.hint.textContent = text;
    els.hint.hidden = !text;
    if (text) els.input.setAttribute("aria-describedby", "composer-hint");
    else els.input.removeAttribute("aria-describedby");
    if (touch.matches) els.stop.removeAttribute("aria-keyshortcuts");
    else els.stop.setAttribute("aria-keyshortcuts", "Escape");
  };
  touch.addEventListener("change", showHint);
  showHint();

  // Going away (a reload, a closed tab): save now, and leave a running answer to the server,
  // for this tab's next page to join.
  window.addEventListener("pagehide", () => {
    conversation.leave();
    save();
  });
  els.mode.addEventListener("change", () => {
    state.mode = els.mode.value;
    save();
  });
  // Other tabs of the same page: keep versions in step when they save.
  window.addEventListener("storage", (e) => {
    if (e.key !== "scenario-agent:v1" || conversation.busy) return;
    const fresh = loadState();
    state.versions = fresh.versions;
    state.index = fresh.index;
    panel.renderCurrent([]);
  });

  els.mode.value = MODES.includes(state.mode) ? state.mode : "auto";
  state.mode = els.mode.value;
  conversation.renderTranscript();
  panel.init();
  conversation.setBusy(false);
  conversation.resumeAfterReload();
  health.refresh();
  document.body.dataset.ready = "true";
}

main();
