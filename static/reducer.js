// One streamed answer as a pure reducer: reduce(state, event) -> state. No DOM, no I/O, so every
// frame type is tested under `node --test` (tests/js/reducer.test.mjs); conversation.js turns
// the difference between two states into DOM updates.
//
// An event is {type, data, t, seq?}: the SSE event name, its JSON payload (already parsed), the
// arrival time in ms since the request started, and the frame's number from its SSE id. agent/events.py is the source of the shapes:
//
//   start {request_id, intent, model, provider}   reasoning {content, withheld?}
//   chat {content}    scenario_delta {content}    scenario_patch {op, index}
//   scenario {scenario, changes}    repair {attempt, reason}
//   error {code, message, retryable, retry_after?}    done {finish_reason, usage, timings, repairs}
//
// The state is never mutated: each event gives a new object (unchanged parts are shared), so a
// view can compare the two with `!==`.

import { applyOperation } from "./json-patch.js";

/** Every event type the reducer handles; tests/test_events.py holds it equal to EVENT_TYPES. */
export const HANDLED_EVENT_TYPES = Object.freeze([
  "start",
  "reasoning",
  "chat",
  "scenario_delta",
  "scenario_patch",
  "scenario",
  "repair",
  "error",
  "done",
]);

export const REPAIR_NOTICE = "The model's edit did not apply; asking it to fix it.";

/**
 * The state before the first frame. `scenario`: the scenario the request was sent with (the
 * base a `scenario_patch` preview starts from).
 */
export function initialState({ scenario = null } = {}) {
  return {
    base: scenario,
    requestId: null,
    intent: null,
    model: null,
    provider: null,
    text: "", // the answer's prose (chat frames)
    // What the last event added to `text`, `reasoning.text` or `block.text`: a view appends
    // it instead of slicing the long string (which would copy all of it every token).
    delta: "",
    reasoning: { text: "", delta: "", withheld: false, frames: 0, startedAt: null, lastAt: null, endedAt: null, open: false },
    block: { open: false, text: "", delta: "" }, // the fenced block's raw text as it streams
    preview: null, // {doc, ops: [{op, index, path}], last: path, error} while patch frames land
    result: null, // {scenario, changes} when the scenario frame came
    repairs: [], // [{attempt, reason}]
    notice: null, // {kind: "info"|"error", text} for the scenario panel
    error: null, // {code, message, retryable, retryAfter}
    done: null, // the done payload
    cutOff: false, // done.finish_reason == "length": the answer was cut by the output limit
    finished: false,
    // The number of the last frame applied (from its SSE id, "<run_id>-<seq>"); 0 before any.
    // A frame whose number is not above it was applied already (a join's replay) and is ignored.
    seq: 0,
    resumedAfter: null, // the frame a resumed answer went on from (resumeState)
  };
}

/**
 * The state of an answer continued after a reload: its saved `text` holds every frame up to
 * `seq`. `applied`: the answer's scenario frame was applied before the reload (a second one is
 * never applied again).
 */
export function resumeState({ scenario = null, text = "", seq = 0, intent = null, applied = false } = {}) {
  const s = initialState({ scenario });
  return {
    ...s,
    text: typeof text === "string" ? text : "",
    seq: Number.isInteger(seq) && seq > 0 ? seq : 0,
    resumedAfter: Number.isInteger(seq) && seq > 0 ? seq : 0,
    intent: intent || null,
    result: applied ? { scenario: null, changes: null, earlier: true } : null,
  };
}

const str = (v) => (typeof v === "string" ? v : "");

/** The `error` payload in the page's error shape (the same as api.js's ApiError fields). */
export function eventError(p) {
  return {
    code: typeof p.code === "string" ? p.code : "error",
    message: typeof p.message === "string" ? p.message : "The agent reported an error.",
    retryable: p.retryable !== false,
    retryAfter: typeof p.retry_after === "number" ? p.retry_after : null,
  };
}

/** The thinking stops when the answer starts (its first chat or block text). */
function endThinking(reasoning, t) {
  if (!reasoning.open) return reasoning;
  return { ...reasoning, open: false, endedAt: t ?? reasoning.lastAt };
}

/**
 * Apply one event. Unknown types and malformed payloads leave the state as it was (apart from
 * `seq`); so does a frame whose `seq` is not above the state's (already applied).
 */
export function reduce(state, event) {
  if (state.finished || !event) return state;
  const seq = Number.isInteger(event.seq) && event.seq > 0 ? event.seq : null;
  if (seq !== null && seq <= state.seq) return state;
  const next = step(state, event);
  return seq === null ? next : { ...next, seq };
}

function step(state, event) {
  const data = event.data && typeof event.data === "object" ? event.data : null;
  if (!data) return state;
  const t = typeof event.t === "number" ? event.t : null;
  switch (event.type) {
    case "start":
      return {
        ...state,
        requestId: str(data.request_id) || state.requestId,
        intent: str(data.intent) || null,
        model: str(data.model) || null,
        provider: str(data.provider) || null,
      };
    case "reasoning": {
      const r = state.reasoning;
      return {
        ...state,
        reasoning: {
          ...r,
          text: r.text + str(data.content),
          delta: str(data.content),
          withheld: r.withheld || data.withheld === true,
          frames: r.frames + 1,
          startedAt: r.startedAt ?? t,
          lastAt: t,
          // A thought after the answer began (rare) does not reopen the block.
          open: r.endedAt === null,
        },
      };
    }
    case "chat": {
      const content = str(data.content);
      if (!content) return state;
      return { ...state, text: state.text + content, delta: content, reasoning: endThinking(state.reasoning, t) };
    }
    case "scenario_delta":
      return {
        ...state,
        block: { open: true, text: state.block.text + str(data.content), delta: str(data.content) },
        reasoning: endThinking(state.reasoning, t),
      };
    case "scenario_patch": {
      if (!data.op || typeof data.op !== "object") return state;
      const from = state.preview ? state.preview.doc : state.base;
      const ops = state.preview ? state.preview.ops : [];
      try {
        const { doc, path } = applyOperation(from, data.op);
        const entry = { op: data.op, index: typeof data.index === "number" ? data.index : ops.length, path };
        return { ...state, preview: { doc, ops: [...ops, entry], last: path, error: null }, reasoning: endThinking(state.reasoning, t) };
      } catch (err) {
        // The server applied it to its copy; ours disagrees (an edited base?). Keep the preview
        // as it is; the scenario frame, if it comes, is the truth.
        return { ...state, preview: { doc: from, ops, last: null, error: String(err.message || err) } };
      }
    }
    case "scenario": {
      // One scenario per answer: a second one (a resumed answer's was applied before the
      // reload) is not applied again.
      if (!data.scenario || typeof data.scenario !== "object" || state.result) return state;
      return {
        ...state,
        result: { scenario: data.scenario, changes: Array.isArray(data.changes) ? data.changes : null },
        preview: null,
        block: { open: false, text: state.block.text, delta: "" },
        notice: null,
      };
    }
    case "repair":
      return {
        ...state,
        repairs: [...state.repairs, { attempt: typeof data.attempt === "number" ? data.attempt : state.repairs.length + 1, reason: str(data.reason) }],
        preview: null,
        block: { open: false, text: "", delta: "" },
        notice: { kind: "info", text: REPAIR_NOTICE },
      };
    case "error": {
      const error = eventError(data);
      const hadBlock = state.block.open || state.preview !== null;
      let notice = state.notice;
      if (error.code === "invalid_scenario") notice = { kind: "error", text: "The agent's new version was not a valid scenario, so the current scenario is unchanged." };
      else if (error.code === "output_truncated") notice = { kind: "error", text: "The new version was cut off by the model's output limit, so the current scenario is unchanged." };
      else if (hadBlock) notice = { kind: "error", text: "The new version did not finish arriving; the current scenario is unchanged." };
      return { ...state, error, preview: null, block: { open: false, text: state.block.text, delta: "" }, notice };
    }
    case "done":
      return {
        ...state,
        done: data,
        cutOff: data.finish_reason === "length",
        finished: true,
        reasoning: endThinking(state.reasoning, t),
        block: state.block.open ? { open: false, text: state.block.text, delta: "" } : state.block,
      };
    default:
      return state;
  }
}

/** How long the model thought, in ms (null before any reasoning frame). */
export function thinkingMs(reasoning, now) {
  if (reasoning.startedAt === null) return null;
  const end = reasoning.endedAt ?? (reasoning.open ? now : reasoning.lastAt);
  return Math.max(0, (end ?? reasoning.startedAt) - reasoning.startedAt);
}
