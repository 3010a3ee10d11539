// The scenario panel: versions (undo/redo), the readable view with highlights, the live JSON
// and patch preview of a modify, samples, import/export and the JSON editor.
//
// conversation.js drives the preview through the returned API; everything else here is the
// panel's own controls. Scenario text goes into the DOM as text only (scenario-view.js).

import { describeChange, describeChanges, differentScenarioLine, resolveChangePaths, versionRelation } from "./change-words.js";
import { checkScenarioText, diff, validateScenario } from "./json-tools.js";
import { changeTarget, createPreview, el, highlightChanges, renderScenario } from "./scenario-view.js";
import { canRedo, canUndo, currentScenario, pushVersion } from "./store.js";

const pretty = (value) => JSON.stringify(value, null, 2);

/**
 * Wire the panel. `els`: the page's elements; `state`: the store's state; `save()`: persist it;
 * `announce(text)`: the polite status region. Returns the API conversation.js uses.
 */
export function createScenarioPanel({ els, state, save, announce, copyText = null }) {
  const liveJson = createPreview(els.liveJson);
  let editorDirty = false;
  let lastCheck = null;
  let previewing = false;

  function showNotice(text, kind = "info") {
    els.notice.textContent = text || "";
    els.notice.dataset.kind = kind;
    els.notice.hidden = !text;
  }

  // ---- the live block and the patch preview ------------------------------------------

  function openLive() {
    liveJson.reset();
    els.liveWrap.hidden = false;
    selectTab("view", false);
    els.panelView.scrollTop = 0;
    showNotice("");
    document.body.classList.add("scenario-forming");
  }

  function closeLive() {
    els.liveWrap.hidden = true;
    liveJson.reset();
    document.body.classList.remove("scenario-forming");
  }

  /**
   * Show a preview of the edit as it lands: `preview` is the reducer's {doc, ops, last}. Every
   * operation so far is highlighted; the one that just landed also flashes and is scrolled to.
   */
  // A patch block can hold over a thousand small operations, each a preview: they are drawn at
  // most once per animation frame, the latest one (the scenario view is re-rendered whole).
  let pendingPreview = null;
  function showPreview(preview) {
    previewing = true;
    if (pendingPreview === null) {
      requestAnimationFrame(() => {
        const latest = pendingPreview;
        pendingPreview = null;
        if (previewing && latest) drawPreview(latest);
      });
    }
    pendingPreview = preview;
  }

  function drawPreview(preview) {
    selectTab("view", false);
    renderScenario(els.view, preview.doc);
    const changes = preview.ops.map((o) => ({ ...o.op, path: o.path }));
    const hits = highlightChanges(els.view, changes);
    let landed = null;
    if (preview.last !== null) {
      const found = changeTarget(els.view, { path: preview.last });
      if (found) {
        found.element.classList.add("landing");
        landed = found.element;
      }
    }
    if (landed || hits[0]) revealInPanel(landed || hits[0]);
    els.view.dataset.preview = "true";
    els.versionLabel.textContent = `Preview: ${preview.ops.length} change${preview.ops.length === 1 ? "" : "s"} so far`;
    const base = currentScenario(state);
    renderChangesSummary(changes, hits, { before: base, after: preview.doc }, "Changing:");
  }

  /** Drop the preview: the current version is shown again, unchanged. */
  function dropPreview() {
    if (!previewing) return;
    previewing = false;
    renderCurrent([]);
  }

  // ---- versions -------------------------------------------------------------------------

  /** Show the current version; highlight `changes` when given. */
  function renderCurrent(changes = [], context = null) {
    previewing = false;
    delete els.view.dataset.preview;
    const scenario = currentScenario(state);
    renderScenario(els.view, scenario);
    const hits = highlightChanges(els.view, changes);
    if (hits.length) revealInPanel(hits[0]);
    const before = state.index > 0 ? state.versions[state.index - 1].scenario : null;
    renderChangesSummary(changes, hits, context || { before, after: scenario }, "What changed:");
    const n = state.versions.length;
    els.versionLabel.textContent = n ? `Version ${state.index + 1} of ${n}` : "No versions yet";
    els.undo.disabled = !canUndo(state);
    els.redo.disabled = !canRedo(state);
    els.exportBtn.disabled = !scenario;
    if (els.copyJson) els.copyJson.disabled = !scenario;
    showSampleOf(state.versions[state.index]);
    if (!editorDirty) {
      els.editor.value = scenario ? pretty(scenario) : "";
      validateEditor();
    } else {
      setJsonStatus("info", "A new version is shown in View; your unsaved edits here are kept. Revert to load it.");
    }
  }

  /** "What changed: [renamed the title] [added role Journalist]": each item jumps to its highlight. */
  function renderChangesSummary(changes, hits, context, label) {
    els.changesSummary.replaceChildren();
    els.changesSummary.hidden = hits.length === 0;
    if (!hits.length) return;
    els.changesSummary.appendChild(el("span", "changes-label", label));
    const shown = changes.slice(0, 8);
    for (const change of shown) {
      const button = el("button", "change-link", describeChange(change, context));
      button.type = "button";
      button.addEventListener("click", () => revealChange(change));
      els.changesSummary.appendChild(button);
    }
    if (changes.length > shown.length) els.changesSummary.appendChild(el("span", "", `and ${changes.length - shown.length} more`));
  }

  function revealChange(change) {
    selectTab("view", false);
    const found = changeTarget(els.view, change);
    if (!found) return;
    if (els.panelView.scrollHeight > els.panelView.clientHeight) revealInPanel(found.element, true);
    else found.element.scrollIntoView({ block: "center" });
  }

  /** Scroll the scenario panel (not the page) so `node` is in view, when the panel scrolls. */
  function revealInPanel(node, always = false) {
    const panel = els.panelView;
    if (panel.hidden) return;
    requestAnimationFrame(() => {
      if (panel.scrollHeight <= panel.clientHeight) return;
      const offset = node.getBoundingClientRect().top - panel.getBoundingClientRect().top;
      if (always || offset < 0 || offset > panel.clientHeight - 40) panel.scrollTop += offset - 48;
    });
  }

  /**
   * A new version from the agent, a sample, an import or the editor. Returns the change list
   * in words ("" when there was nothing to compare with).
   */
  function accept(scenario, changes, source, sample = null) {
    const before = currentScenario(state);
    const list = Array.isArray(changes) ? resolveChangePaths(changes, before) : before ? diff(before, scenario) : [];
    pushVersion(state, scenario, list, source);
    if (sample) state.versions[state.index].sample = sample;
    // A different scenario (a Create, a sample or an import replacing the one before): one
    // line, nothing highlighted; its dozens of "changes" would say nothing.
    const different = before && versionRelation(before, scenario).relation === "different";
    renderCurrent(different ? [] : list, { before, after: scenario });
    if (different) showNotice(differentScenarioLine("new", scenario, state.index + 1));
    save();
    const summary = describeChanges(list, { before, after: scenario });
    announce(different ? differentScenarioLine("new", scenario, state.index + 1) : `Scenario updated${summary ? `: ${summary}` : ""}.`);
    return summary;
  }

  /** Move to version `index` (Undo, Redo): highlight what differs, unless it is another scenario. */
  function moveTo(index, how) {
    const from = currentScenario(state);
    state.index = index;
    editorDirty = false;
    const to = currentScenario(state);
    if (versionRelation(from, to).relation === "different") {
      renderCurrent([], { before: from, after: to });
      showNotice(differentScenarioLine(how, to, state.index + 1));
    } else {
      renderCurrent(diff(from, to), { before: from, after: to });
      showNotice(`${how === "back" ? "Back" : "Forward"} to version ${state.index + 1}.`);
    }
    announce(els.notice.textContent);
    save();
  }

  function undo() {
    if (canUndo(state)) moveTo(state.index - 1, "back");
  }

  function redo() {
    if (canRedo(state)) moveTo(state.index + 1, "forward");
  }

  /**
   * The Sample box names a sample only while the version shown is that sample as loaded: once
   * it is renamed, edited or replaced, the box goes back to "Choose a sample…".
   */
  function showSampleOf(version) {
    const want = version && version.source === "sample" && typeof version.sample === "string" ? version.sample : "";
    if (els.sampleSelect.value === want) return;
    if (want && ![...els.sampleSelect.options].some((o) => o.value === want)) return;
    els.sampleSelect.value = want;
    syncSampleTitle();
  }

  // ---- samples --------------------------------------------------------------------------

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
        // The select may be narrower than a long title: the tooltip has all of it.
        opt.title = opt.textContent;
        els.sampleSelect.appendChild(opt);
      }
      els.loadSample.disabled = false;
      showSampleOf(state.versions[state.index]);
    } catch {
      els.sampleSelect.disabled = true;
      els.sampleSelect.options[0].textContent = "No samples available";
      els.loadSample.disabled = true;
    }
  }

  function syncSampleTitle() {
    const opt = els.sampleSelect.selectedOptions[0];
    els.sampleSelect.title = opt && opt.value ? opt.textContent : "";
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
      accept(check.value, [], "sample", file);
      showNotice(`Loaded the sample “${check.value.title}”.`);
    } catch (err) {
      showNotice(`Could not load the sample: ${err.message}`, "error");
    }
  }

  // ---- import / export ------------------------------------------------------------------

  async function importFile(file) {
    if (!file) return;
    if (file.size > 1024 * 1024) {
      showNotice("That file is too large to be a scenario (over 1 MiB).", "error");
      return;
    }
    const check = checkScenarioText(await file.text());
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
    accept(check.value, [], "import");
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

  // ---- JSON editor ----------------------------------------------------------------------

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
    accept(lastCheck.value, before ? changes : [], "edit");
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

  // ---- tabs (View / JSON): arrow keys move between them -----------------------------------

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

  // ---- wiring ---------------------------------------------------------------------------

  els.loadSample.addEventListener("click", loadSample);
  els.sampleSelect.addEventListener("change", syncSampleTitle);
  els.undo.addEventListener("click", undo);
  els.redo.addEventListener("click", redo);
  els.importBtn.addEventListener("click", () => els.importFile.click());
  els.importFile.addEventListener("change", () => {
    importFile(els.importFile.files[0]).finally(() => {
      els.importFile.value = "";
    });
  });
  els.exportBtn.addEventListener("click", exportScenario);
  if (els.copyJson && copyText) {
    els.copyJson.addEventListener("click", async () => {
      const scenario = currentScenario(state);
      if (!scenario) return;
      const ok = await copyText(pretty(scenario) + "\n");
      els.copyJson.textContent = ok ? "Copied" : "Copy failed";
      announce(ok ? "The scenario JSON is on the clipboard." : "Could not copy: the browser refused.");
      setTimeout(() => {
        els.copyJson.textContent = "Copy JSON";
      }, 1500);
    });
  }
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

  return {
    /** The scenario the next request is about. */
    current: () => currentScenario(state),
    showNotice,
    openLive,
    closeLive,
    appendLive: (text) => liveJson.append(text),
    showPreview,
    dropPreview,
    accept,
    revealChange,
    renderCurrent,
    undo,
    redo,
    /** First paint: the saved current version with its changes. */
    init() {
      const current = currentScenario(state);
      if (current && validateScenario(current).errors.length) console.warn("The saved scenario has problems:", validateScenario(current).errors);
      renderCurrent(state.index >= 0 ? state.versions[state.index].changes : []);
      loadSampleIndex();
    },
  };
}
