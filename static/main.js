// The composition root: finds the page's elements, builds each feature with what it needs, and
// starts them. No feature logic lives here.
//
//   health.js          the header: model, server health, a spent token budget
//   auth.js            the access-token dialog and withAuth()
//   scenario-panel.js  versions, preview, samples, import/export, JSON editor
//   conversation.js    messages and the streamed answer (reducer.js + markdown-view.js)
//   comparison.js      "Compare with buffered"
//   inspector.js       timings, frames and the timeline
//
// Load order: index.html loads this module only; imports bring in the rest. The "Streaming lab"
// panel (static/lab.js, static/lab.css) is loaded by index.html on its own and fills
// <section id="lab-panel">; it does not depend on anything here.

import { createAuth } from "./auth.js";
import { createComparison } from "./comparison.js";
import { createConversation } from "./conversation.js";
import { createHealth } from "./health.js";
import { createInspector } from "./inspector.js";
import { createScenarioPanel } from "./scenario-panel.js";
import { loadState, saveState } from "./store.js";

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
  const panel = createScenarioPanel({ els, state, save, announce });
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
    }
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
  health.refresh();
  document.body.dataset.ready = "true";
}

main();
