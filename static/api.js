// Talking to the server: fetch + AbortController, the body read as a byte
// stream and handed to sse.js chunk by chunk (never parsed as whole JSON
// documents per read: a read can hold half a frame, or ten).
//
// Every /api/ request carries `Authorization: Bearer <token>` once the user
// has given a token (kept in sessionStorage only).

import { createSSEParser, runIdFromLocation } from "./sse.js";

export const STREAM_URL = "/api/agent/scenario/stream";
/** A run's join URL (GET, with Last-Event-ID) and its stop URL (DELETE). */
export const runStreamUrl = (runId) => `/api/agent/scenario/runs/${encodeURIComponent(runId)}/stream`;
export const runUrl = (runId) => `/api/agent/scenario/runs/${encodeURIComponent(runId)}`;
export const BUFFERED_URL = "/api/agent/scenario";
export const HEALTH_URL = "/api/agent/scenario/stream/health";
const TOKEN_KEY = "scenario-agent:token";

/** An error to show the user: HTTP error bodies, `error` events, network loss. */
export class ApiError extends Error {
  constructor({ code, message, status = 0, retryable = true, retryAfter = null, requestId = null, field = null }) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
    this.field = field;
  }
}

// ---- access token --------------------------------------------------------------

function session() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

let memoryToken = null;

export function getToken() {
  const s = session();
  return (s ? s.getItem(TOKEN_KEY) : memoryToken) || null;
}

export function setToken(token) {
  const s = session();
  if (s) {
    if (token) s.setItem(TOKEN_KEY, token);
    else s.removeItem(TOKEN_KEY);
  } else {
    memoryToken = token || null;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

const now = () => performance.now();

// ---- errors ---------------------------------------------------------------------

/** Turn a non-2xx response into an ApiError, reading the JSON error body if any. */
export async function errorFromResponse(res) {
  const requestId = res.headers.get("X-Request-ID");
  const retryAfterHeader = Number(res.headers.get("Retry-After"));
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const e = body && typeof body === "object" && body.error && typeof body.error === "object" ? body.error : {};
  const status = res.status;
  const code = typeof e.code === "string" ? e.code : status === 401 ? "unauthorized" : `http_${status}`;
  const message =
    typeof e.message === "string" && e.message
      ? e.message
      : `The server answered ${status}${res.statusText ? " " + res.statusText : ""}.`;
  const retryAfter = typeof e.retry_after === "number" ? e.retry_after : Number.isFinite(retryAfterHeader) && retryAfterHeader > 0 ? retryAfterHeader : null;
  const retryable = typeof e.retryable === "boolean" ? e.retryable : status >= 500 || status === 429 || status === 408;
  return new ApiError({ code, message, status, retryable, retryAfter, requestId, field: e.field ?? null });
}

function networkError(cause) {
  const err = new ApiError({
    code: "network",
    message: "The connection to the server was lost. Check that the server is running, then try again.",
    retryable: true,
  });
  err.cause = cause;
  return err;
}

export const isAbort = (err, signal) => (signal && signal.aborted) || (err && err.name === "AbortError");

// ---- health ---------------------------------------------------------------------

/** GET the health endpoint: {status, provider, model, active_streams, version, budget?, ...}. */
export async function getHealth({ signal } = {}) {
  let res;
  try {
    res = await fetch(HEALTH_URL, { headers: headers(), signal, cache: "no-store" });
  } catch (err) {
    if (isAbort(err, signal)) throw err;
    throw networkError(err);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

// ---- streaming --------------------------------------------------------------------

/** POST a JSON body; a failure to reach the server becomes a network ApiError. */
async function postJSON(url, body, signal, extraHeaders = {}) {
  try {
    return await fetch(url, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", ...extraHeaders }),
      body: JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (isAbort(err, signal)) throw err;
    throw networkError(err);
  }
}

/**
 * POST the request and read the SSE stream.
 *
 * Callbacks (all optional), each given `t` = ms since the request started:
 *   onResponse({status, requestId, runId, t})  headers arrived (2xx only); runId from the
 *                                              Content-Location header (null when absent)
 *   onChunk({bytes, t})                        one reader.read() result
 *   onEvent({type, data, id, t})               one SSE event (raw data text, its SSE id)
 *   onComment({text, t})                       one comment line, e.g. " ping"
 *   onRetry(ms)                                the stream's `retry:` hint
 *
 * Resolves to {requestId, runId, t0} when the body ends; rejects with an ApiError for an HTTP
 * error or network loss (code "network"), or the AbortError when `signal` aborts (the partial
 * results were already delivered through the callbacks).
 */
export async function streamAgent(body, options = {}) {
  const t0 = now();
  const res = await postJSON(STREAM_URL, body, options.signal, { Accept: "text/event-stream" });
  return readEventStream(res, t0, options);
}

/**
 * Join run `runId` after frame `after` (GET its stream with `Last-Event-ID: <runId>-<after>`):
 * the frames after it are replayed, then it goes on live. Same callbacks and result as
 * streamAgent, plus `status`; a run the server no longer has is `{status: 204}` with nothing
 * read. A join from before what the server kept rejects with its 409 (`run_log_truncated`).
 */
export async function joinRun(runId, after, options = {}) {
  const t0 = now();
  let res;
  try {
    res = await fetch(runStreamUrl(runId), {
      headers: headers({ Accept: "text/event-stream", "Last-Event-ID": `${runId}-${Math.max(0, after | 0)}` }),
      signal: options.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (isAbort(err, options.signal)) throw err;
    throw networkError(err);
  }
  if (res.status === 204) return { status: 204, requestId: res.headers.get("X-Request-ID"), runId, t0 };
  const result = await readEventStream(res, t0, options, runId);
  return { ...result, status: res.status };
}

/**
 * Stop run `runId` on the server (DELETE; 204 whether or not it still runs). `keepalive` lets
 * the request out even when the page is going away. Never rejects: a Stop that cannot reach
 * the server still stops reading, and the server cancels a run nobody reads after its grace.
 */
export async function cancelRun(runId) {
  try {
    const res = await fetch(runUrl(runId), { method: "DELETE", headers: headers(), keepalive: true, cache: "no-store" });
    return res.status;
  } catch {
    return 0;
  }
}

async function readEventStream(res, t0, { signal, onResponse, onChunk, onEvent, onComment, onRetry } = {}, knownRunId = null) {
  const requestId = res.headers.get("X-Request-ID");
  if (!res.ok) throw await errorFromResponse(res);
  const runId = runIdFromLocation(res.headers.get("Content-Location")) || knownRunId;
  if (onResponse) onResponse({ status: res.status, requestId, runId, t: now() - t0 });

  const parser = createSSEParser({
    onEvent: (e) => onEvent && onEvent({ ...e, t: now() - t0 }),
    onComment: (text) => onComment && onComment({ text, t: now() - t0 }),
    onRetry: (ms) => onRetry && onRetry(ms),
  });
  const reader = res.body.getReader();
  const stopReading = () => reader.cancel().catch(() => {});
  if (signal) signal.addEventListener("abort", stopReading, { once: true });
  try {
    for (;;) {
      let result;
      try {
        result = await reader.read();
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw networkError(err);
      }
      if (signal && signal.aborted) throw new DOMException("The request was stopped.", "AbortError");
      if (result.done) break;
      if (onChunk) onChunk({ bytes: result.value.byteLength, t: now() - t0 });
      parser.feed(result.value);
    }
    parser.end();
  } finally {
    if (signal) signal.removeEventListener("abort", stopReading);
  }
  return { requestId, runId, t0 };
}

/**
 * POST the same body to the buffered endpoint. The body is still read chunk
 * by chunk so the inspector can show when bytes arrived; the text becomes
 * visible only once the whole JSON document is in.
 * Resolves to {result, requestId, tHeaders, tDone}.
 */
export async function bufferedAgent(body, { signal, onChunk } = {}) {
  const t0 = now();
  const res = await postJSON(BUFFERED_URL, body, signal);
  const tHeaders = now() - t0;
  const requestId = res.headers.get("X-Request-ID");
  if (!res.ok) throw await errorFromResponse(res);
  const reader = res.body.getReader();
  const parts = [];
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.byteLength;
      if (onChunk) onChunk({ bytes: value.byteLength, t: now() - t0 });
    }
  } catch (err) {
    if (isAbort(err, signal)) throw err;
    throw networkError(err);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.byteLength;
  }
  let result;
  try {
    result = JSON.parse(new TextDecoder().decode(all));
  } catch {
    throw new ApiError({ code: "bad_response", message: "The server's answer was not valid JSON.", requestId });
  }
  return { result, requestId, tHeaders, tDone: now() - t0 };
}
