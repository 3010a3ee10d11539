// Server-Sent Events parsing, following the WHATWG HTML spec
// ("9.2.6 Interpreting an event stream"), split into three small stages:
//
//   bytes  --createDecoder-->  text  --createLineSplitter-->  lines
//   lines  --createEventParser-->  events (+ comments, + retry hints)
//
// Each event carries its id (the spec's last event ID: an `id:` field without NUL, kept for
// the frames after it); `retry:` hints are digits only. parseEventId() reads the server's
// ids, "<run_id>-<seq>", which the page uses to join a run again after the last frame.
//
// Every stage keeps its own carry-over state, so input may be split at any
// byte: inside a multi-byte UTF-8 character, inside a field name, between a
// "\r" and its "\n", or in the middle of a frame.
//
// Nothing here touches the DOM or the network; api.js feeds it the chunks of
// a fetch() body and the page (conversation.js, through reducer.js) receives the parsed events.

/**
 * Bytes -> text. Uses TextDecoder with {stream: true} so that a character
 * whose bytes arrive in two reads is decoded once, whole. A leading BOM is
 * dropped (TextDecoder does that by default), as the spec requires.
 */
export function createDecoder() {
  const decoder = new TextDecoder("utf-8");
  return {
    /** @param {Uint8Array|ArrayBuffer|string} chunk */
    decode(chunk) {
      if (typeof chunk === "string") return chunk;
      return decoder.decode(chunk, { stream: true });
    },
    /** Flush any incomplete trailing sequence (becomes U+FFFD). */
    end() {
      return decoder.decode();
    },
  };
}

/**
 * Text -> lines. A line ends at "\n", "\r" or "\r\n". A "\r" that ends one
 * chunk is held back in spirit: the line is emitted at once, and a "\n" that
 * starts the next chunk is skipped rather than read as an empty line.
 *
 * @param {(line: string) => void} onLine  called once per complete line
 */
export function createLineSplitter(onLine) {
  let buffer = "";
  let skipLeadingLF = false; // previous chunk ended in "\r"

  return {
    /** @param {string} text */
    push(text) {
      let start = 0;
      if (skipLeadingLF && text.length > 0) {
        if (text.charCodeAt(0) === 10) start = 1;
        skipLeadingLF = false;
      }
      let i = start;
      const n = text.length;
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 10 || c === 13) {
          onLine(buffer + text.slice(start, i));
          buffer = "";
          if (c === 13) {
            if (i + 1 < n) {
              if (text.charCodeAt(i + 1) === 10) i += 1;
            } else {
              skipLeadingLF = true;
            }
          }
          i += 1;
          start = i;
        } else {
          i += 1;
        }
      }
      if (start < n) buffer += text.slice(start);
    },
    /**
     * End of input. An unterminated last line is not a line (the spec only
     * knows lines that end with an end-of-line), so it is dropped; the
     * return value says how many characters were dropped.
     */
    end() {
      const dropped = buffer.length;
      buffer = "";
      skipLeadingLF = false;
      return dropped;
    },
  };
}

/**
 * Split one line into [field, value] per the spec: everything before the
 * first ":" is the field; one space after the colon is removed; a line with
 * no colon is a field with an empty value. Comment lines (leading ":")
 * return null.
 *
 * @param {string} line
 * @returns {[string, string] | null}
 */
export function parseField(line) {
  if (line.startsWith(":")) return null;
  const colon = line.indexOf(":");
  if (colon === -1) return [line, ""];
  let value = line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  return [line.slice(0, colon), value];
}

/**
 * Lines -> events.
 *
 * @param {object} handlers
 * @param {(event: {type: string, data: string, id: string}) => void} handlers.onEvent
 *        dispatched on each blank line that closes a frame with data
 * @param {(text: string) => void} [handlers.onComment]
 *        comment lines (": ping"), text without the leading ":"; never dispatched as events
 * @param {(ms: number) => void} [handlers.onRetry]
 *        a valid "retry:" field (ASCII digits only)
 */
export function createEventParser({ onEvent, onComment, onRetry } = {}) {
  let data = "";
  let hasData = false;
  let eventType = "";
  let lastEventId = "";

  function dispatch() {
    // Step 1: the last event ID is updated even if nothing is dispatched.
    const id = lastEventId;
    if (!hasData) {
      data = "";
      eventType = "";
      return;
    }
    // Data buffer ends in "\n" after every data line; drop the last one.
    const payload = data.endsWith("\n") ? data.slice(0, -1) : data;
    const type = eventType === "" ? "message" : eventType;
    data = "";
    hasData = false;
    eventType = "";
    if (onEvent) onEvent({ type, data: payload, id });
  }

  return {
    /** @param {string} line  one line without its end-of-line */
    line(line) {
      if (line === "") {
        dispatch();
        return;
      }
      const parsed = parseField(line);
      if (parsed === null) {
        if (onComment) onComment(line.slice(1));
        return;
      }
      const [field, value] = parsed;
      switch (field) {
        case "event":
          eventType = value;
          break;
        case "data":
          data += value + "\n";
          hasData = true;
          break;
        case "id":
          if (!value.includes("\u0000")) lastEventId = value;
          break;
        case "retry":
          if (/^[0-9]+$/.test(value) && onRetry) onRetry(parseInt(value, 10));
          break;
        default:
          break; // unknown fields are ignored
      }
    },
    /** End of stream: an event not closed by a blank line is discarded. */
    end() {
      data = "";
      hasData = false;
      eventType = "";
    },
    get lastEventId() {
      return lastEventId;
    },
  };
}

/**
 * The server's frame ids: "<run_id>-<seq>" (the run id, then the event's number from 1).
 * Returns {runId, seq}, or null for an id of any other shape (an empty id, a scripted stream's
 * ids, a sequence that is not a whole number). The run id is everything before the last "-".
 *
 * @param {string} id
 * @returns {{runId: string, seq: number} | null}
 */
export function parseEventId(id) {
  if (typeof id !== "string") return null;
  const dash = id.lastIndexOf("-");
  if (dash <= 0) return null;
  const runId = id.slice(0, dash);
  const digits = id.slice(dash + 1);
  if (!/^[0-9]{1,15}$/.test(digits) || !/^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$/.test(runId)) return null;
  return { runId, seq: Number(digits) };
}

/** The join URL a stream response names in its Content-Location header -> the run id, or null. */
export function runIdFromLocation(location) {
  if (typeof location !== "string") return null;
  const m = /\/api\/agent\/scenario\/runs\/([A-Za-z0-9_-]+)\/stream(?:[?#].*)?$/.exec(location);
  return m ? m[1] : null;
}

/**
 * The three stages wired together.
 *
 * @param {object} handlers  same as createEventParser
 * @returns {{feed(chunk: Uint8Array|string): void, end(): void, readonly lastEventId: string}}
 */
export function createSSEParser(handlers = {}) {
  const decoder = createDecoder();
  const events = createEventParser(handlers);
  const lines = createLineSplitter((line) => events.line(line));
  return {
    feed(chunk) {
      lines.push(decoder.decode(chunk));
    },
    end() {
      lines.push(decoder.end());
      lines.end();
      events.end();
    },
    get lastEventId() {
      return events.lastEventId;
    },
  };
}

/**
 * Convenience for tests and small tools: parse a whole stream given as a
 * list of chunks. Returns {events, comments, retries}.
 *
 * @param {Iterable<Uint8Array|string>} chunks
 */
export function parseAll(chunks) {
  const events = [];
  const comments = [];
  const retries = [];
  const parser = createSSEParser({
    onEvent: (e) => events.push(e),
    onComment: (c) => comments.push(c),
    onRetry: (r) => retries.push(r),
  });
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { events, comments, retries };
}
