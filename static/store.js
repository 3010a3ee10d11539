// Persistence in localStorage: the scenario's version history, the
// conversation and the chosen mode survive a reload. The access token is
// NOT kept here (api.js keeps it in sessionStorage).
//
// Shape (key "scenario-agent:v1"):
//   { versions: [{scenario, changes, source, at, sample?}], index, messages: [...], mode }
// A message: {id, role, content, status, intent?, error?, retried?, reasoning?: {text, withheld, ms},
// cutOff?, changeSummary?, firstChange?: {op, path}, run?: {id, seq}, variants?, variant?}.
// `run`: the server's run the answer came from and the last frame its text holds (to resume
// it after a reload). `variants`: every answer given to the same question (Regenerate), each an
// answer's fields (ANSWER_FIELDS); `variant` is the one shown, whose fields are the message's own.

export const STORAGE_KEY = "scenario-agent:v1";
export const MAX_VERSIONS = 50;
export const MAX_MESSAGES = 200;

// "interrupted": the connection was lost and the answer could not be joined again in time.
const MESSAGE_STATUSES = new Set(["complete", "stopped", "error", "streaming", "interrupted"]);

/** The fields that make one answer (what a variant keeps). */
export const ANSWER_FIELDS = ["content", "status", "intent", "error", "retried", "reasoning", "cutOff", "changeSummary", "firstChange", "run"];
export const MAX_VARIANTS = 10;

export function emptyState() {
  return { versions: [], index: -1, messages: [], mode: "auto" };
}

function storage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // access denied (privacy settings, sandboxed frame)
  }
}

/** Read the saved state, repairing anything odd rather than failing. */
export function loadState() {
  const store = storage();
  const state = emptyState();
  if (!store) return state;
  let raw;
  try {
    raw = JSON.parse(store.getItem(STORAGE_KEY) || "null");
  } catch {
    return state;
  }
  if (!raw || typeof raw !== "object") return state;

  if (Array.isArray(raw.versions)) {
    state.versions = raw.versions
      .filter((v) => v && typeof v === "object" && v.scenario && typeof v.scenario === "object")
      .map((v) => ({
        scenario: v.scenario,
        changes: Array.isArray(v.changes) ? v.changes : [],
        source: typeof v.source === "string" ? v.source : "unknown",
        at: typeof v.at === "number" ? v.at : 0,
        // The sample file a "sample" version was loaded from (the Sample box shows it).
        ...(typeof v.sample === "string" ? { sample: v.sample } : {}),
      }));
  }
  const index = Number.isInteger(raw.index) ? raw.index : state.versions.length - 1;
  state.index = Math.max(-1, Math.min(index, state.versions.length - 1));
  if (state.index === -1 && state.versions.length) state.index = state.versions.length - 1;

  if (Array.isArray(raw.messages)) {
    state.messages = raw.messages
      .filter((m) => m && (m.role === "user" || m.role === "assistant") && typeof m.content === "string")
      .map((m) => {
        const msg = { id: typeof m.id === "string" ? m.id : newId(), role: m.role, ...readAnswer(m) };
        if (m.role === "assistant" && Array.isArray(m.variants) && m.variants.length > 1) {
          const variants = m.variants.filter((v) => v && typeof v.content === "string").slice(-MAX_VARIANTS).map(readAnswer);
          const at = Number.isInteger(m.variant) ? Math.max(0, Math.min(m.variant, variants.length - 1)) : variants.length - 1;
          if (variants.length > 1) {
            variants[at] = answerFields(msg); // the message's own fields are the shown one's
            msg.variants = variants;
            msg.variant = at;
          }
        }
        return msg;
      });
  }
  if (typeof raw.mode === "string") state.mode = raw.mode;
  return state;
}

/** One answer's fields as saved, repaired. */
function readAnswer(m) {
  return {
    content: m.content,
    // An answer that was still streaming when the page went away is, for all purposes, a
    // stopped one (conversation.js resumes it when this tab's run record says it can).
    status: m.status === "streaming" ? "stopped" : MESSAGE_STATUSES.has(m.status) ? m.status : "complete",
    intent: typeof m.intent === "string" ? m.intent : undefined,
    error: m.error && typeof m.error === "object" ? { code: String(m.error.code ?? ""), message: String(m.error.message ?? "") } : undefined,
    retried: m.retried === true || undefined,
    // Shown again after a reload; never sent back to the server (buildHistory).
    reasoning: readReasoning(m.reasoning),
    cutOff: m.cutOff === true || undefined,
    changeSummary: typeof m.changeSummary === "string" ? m.changeSummary : undefined,
    firstChange: m.firstChange && typeof m.firstChange.path === "string" ? { op: String(m.firstChange.op), path: m.firstChange.path } : undefined,
    run: m.run && typeof m.run.id === "string" && Number.isInteger(m.run.seq) ? { id: m.run.id, seq: m.run.seq } : undefined,
  };
}

/** A copy of one answer's fields (a variant). */
export function answerFields(msg) {
  const out = {};
  for (const key of ANSWER_FIELDS) out[key] = msg[key];
  return out;
}

/**
 * Regenerate: keep the answer shown as a variant and make room for a new one, which becomes
 * the shown variant. The message is then an empty streaming answer. Returns the message.
 */
export function beginVariant(msg) {
  const variants = Array.isArray(msg.variants) && msg.variants.length ? msg.variants : [];
  if (!variants.length) variants.push(answerFields(msg));
  else variants[msg.variant] = answerFields(msg);
  for (const key of ANSWER_FIELDS) delete msg[key];
  Object.assign(msg, { content: "", status: "streaming" });
  variants.push(answerFields(msg));
  while (variants.length > MAX_VARIANTS) variants.shift();
  msg.variants = variants;
  msg.variant = variants.length - 1;
  return msg;
}

/** Show variant `to` of a regenerated answer (the one shown is kept first). */
export function showVariant(msg, to) {
  if (!Array.isArray(msg.variants) || to < 0 || to >= msg.variants.length || to === msg.variant) return false;
  msg.variants[msg.variant] = answerFields(msg);
  for (const key of ANSWER_FIELDS) delete msg[key];
  Object.assign(msg, msg.variants[to]);
  msg.variant = to;
  return true;
}

function readReasoning(r) {
  if (!r || typeof r !== "object" || typeof r.text !== "string") return undefined;
  return { text: r.text, withheld: r.withheld === true, ms: typeof r.ms === "number" ? r.ms : null };
}

function serialise(state) {
  return JSON.stringify({
    versions: state.versions,
    index: state.index,
    messages: state.messages.map((m) => {
      const out = { id: m.id, role: m.role, ...answerFields(m) };
      if (Array.isArray(m.variants) && m.variants.length > 1) {
        out.variants = m.variants.map((v, i) => (i === m.variant ? answerFields(m) : v));
        out.variant = m.variant;
      }
      return out;
    }),
    mode: state.mode,
  });
}

/**
 * Save the state. Old versions and messages are trimmed to the caps; if the
 * browser's quota is still exceeded, older history is dropped until it fits.
 * Returns true when saved.
 */
export function saveState(state) {
  const store = storage();
  if (!store) return false;
  trim(state, MAX_VERSIONS, MAX_MESSAGES);
  let versions = MAX_VERSIONS;
  let messages = MAX_MESSAGES;
  for (let attempt = 0; attempt < 8; attempt++) {
    try {
      store.setItem(STORAGE_KEY, serialise(state));
      return true;
    } catch {
      versions = Math.max(1, Math.floor(versions / 2));
      messages = Math.max(2, Math.floor(messages / 2));
      trim(state, versions, messages);
    }
  }
  return false;
}

/** Drop the oldest versions (keeping the current one) and messages. */
export function trim(state, maxVersions, maxMessages) {
  if (state.versions.length > maxVersions) {
    let drop = state.versions.length - maxVersions;
    drop = Math.min(drop, Math.max(0, state.index)); // never drop the current version
    state.versions.splice(0, drop);
    state.index -= drop;
    if (state.versions.length > maxVersions) {
      state.versions.length = Math.max(maxVersions, state.index + 1); // drop redo entries
    }
  }
  if (state.messages.length > maxMessages) state.messages.splice(0, state.messages.length - maxMessages);
}

export function clearState() {
  const store = storage();
  if (store) store.removeItem(STORAGE_KEY);
}

let counter = 0;
export function newId() {
  counter += 1;
  return `m${Date.now().toString(36)}${counter.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

// ---- versions ----------------------------------------------------------------

export function currentScenario(state) {
  return state.index >= 0 ? state.versions[state.index].scenario : null;
}

/** Add a new version after the current one; redo entries are discarded. */
export function pushVersion(state, scenario, changes, source) {
  state.versions.splice(state.index + 1);
  state.versions.push({ scenario, changes: changes || [], source, at: Date.now() });
  state.index = state.versions.length - 1;
  trim(state, MAX_VERSIONS, MAX_MESSAGES);
}

export const canUndo = (state) => state.index > 0;
export const canRedo = (state) => state.index < state.versions.length - 1;

// ---- history sent to the server --------------------------------------------

/**
 * The conversation as the server wants it: [{role, content}] only, oldest
 * first, within the server's limits (50 turns, 64 KiB). Failed answers and answers retried
 * below are left out (their retry follows); stopped partial answers are kept. Of a regenerated
 * answer, the variant shown is sent.
 */
export function buildHistory(messages, { maxTurns = 40, maxBytes = 48 * 1024 } = {}) {
  const turns = messages
    .filter((m) => m.role === "user" || (m.status !== "error" && m.status !== "streaming" && !m.retried && m.content.trim() !== ""))
    .map((m) => ({ role: m.role, content: m.content }));
  let out = turns.slice(-maxTurns);
  const enc = new TextEncoder();
  while (out.length && enc.encode(JSON.stringify(out)).length > maxBytes) out = out.slice(1);
  return out;
}
