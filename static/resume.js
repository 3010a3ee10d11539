// Resuming a streamed answer: the rules, as small pure functions (tested under node in
// tests/js/resume.test.mjs). conversation.js and api.js do the network and the DOM.
//
// A run outlives its HTTP response: the server keeps its frames, and
// `GET /api/agent/scenario/runs/{id}/stream` with `Last-Event-ID: <id>-<seq>` replays the ones
// after `seq`, then goes on live. The page uses that twice:
//   - after a network error mid-stream it joins again, waiting between tries (the server's
//     `retry:` hint, doubled each time, capped), up to MAX_RECONNECTS tries;
//   - after a reload, the tab's record in sessionStorage ({runId, lastEventId, msgId}) says
//     which answer was streaming, and the page joins after the frame its saved text ends with.

import { parseEventId } from "./sse.js";

/** Tries of the join after a network error before the answer is shown as interrupted. */
export const MAX_RECONNECTS = 5;
/** The wait before the first try when the server sent no `retry:` hint (ms). */
export const DEFAULT_RETRY_MS = 1000;
/** No wait between two tries is longer (ms): with the server's 2000 ms hint the five tries
 *  span 2 + 4 + 8 + 8 + 8 = 30 s, about twice the server's default detached grace. */
export const MAX_RETRY_DELAY_MS = 8000;
/** The tab's record of the answer streaming in it (sessionStorage: one tab, gone with it). */
export const RUN_KEY = "scenario-agent:run";

/**
 * How long to wait before join try number `attempt` (0 = the first), in ms: the `retry:` hint
 * (or DEFAULT_RETRY_MS), doubled per try, at most MAX_RETRY_DELAY_MS. null: no more tries.
 */
export function reconnectDelay(attempt, retryMs = null, max = MAX_RECONNECTS) {
  if (!Number.isInteger(attempt) || attempt < 0 || attempt >= max) return null;
  const base = Number.isFinite(retryMs) && retryMs >= 0 ? retryMs : DEFAULT_RETRY_MS;
  return Math.min(base * 2 ** attempt, Math.max(base, MAX_RETRY_DELAY_MS));
}

/** The `Last-Event-ID` header value for a join after frame `seq` of run `runId`. */
export const lastEventId = (runId, seq) => `${runId}-${Math.max(0, seq | 0)}`;

/**
 * The record kept while a stream runs: {runId, lastEventId, msgId}. `storage` is
 * sessionStorage (or anything with getItem/setItem/removeItem); failures are ignored (a page
 * without storage just cannot resume after a reload).
 */
export function saveRunRecord(storage, record) {
  if (!storage || !record || typeof record.runId !== "string") return;
  try {
    storage.setItem(RUN_KEY, JSON.stringify({ runId: record.runId, lastEventId: record.lastEventId || "", msgId: record.msgId || "" }));
  } catch {
    /* full or disabled */
  }
}

/** The tab's record, or null when there is none or it is not one of ours. */
export function loadRunRecord(storage) {
  if (!storage) return null;
  let raw = null;
  try {
    raw = JSON.parse(storage.getItem(RUN_KEY) || "null");
  } catch {
    return null;
  }
  if (!raw || typeof raw !== "object" || typeof raw.runId !== "string" || !raw.runId) return null;
  return { runId: raw.runId, lastEventId: typeof raw.lastEventId === "string" ? raw.lastEventId : "", msgId: typeof raw.msgId === "string" ? raw.msgId : "" };
}

/** Forget the record (when `runId` is given, only if it is that run's). */
export function clearRunRecord(storage, runId = null) {
  if (!storage) return;
  try {
    if (runId !== null) {
      const current = loadRunRecord(storage);
      if (current && current.runId !== runId) return;
    }
    storage.removeItem(RUN_KEY);
  } catch {
    /* disabled */
  }
}

/**
 * After a reload: which saved answer to continue, and after which frame. `messages` are the
 * saved ones (store.js), `record` the tab's run record. The answer must be the last message,
 * belong to the record's run and not be finished; the join starts after the frame its saved
 * text was saved with (`msg.run.seq`), never later, so no text between is lost.
 * Returns {msg, runId, after, seq}: join after frame `after`; the text holds frames up to `seq`
 * (the reducer, seeded with `seq`, ignores any frame up to it).
 */
export function resumePlan(messages, record) {
  if (!record || !Array.isArray(messages) || messages.length === 0) return null;
  const msg = messages[messages.length - 1];
  if (!msg || msg.role !== "assistant" || msg.id !== record.msgId) return null;
  if (!msg.run || msg.run.id !== record.runId) return null;
  if (msg.status === "complete" || msg.status === "error") return null;
  const seq = Number.isInteger(msg.run.seq) && msg.run.seq > 0 ? msg.run.seq : 0;
  let after = seq;
  // The record is written per frame, the text at most once a second and when the page is
  // hidden: should the record ever be behind the text, the earlier of the two wins (a frame
  // replayed twice is ignored by the reducer; one skipped would be lost).
  const seen = parseEventId(record.lastEventId);
  if (seen && seen.runId === record.runId && seen.seq < after) after = seen.seq;
  return { msg, runId: record.runId, after, seq };
}
