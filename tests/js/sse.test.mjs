// Unit tests for static/sse.js. Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import {
  createDecoder,
  createLineSplitter,
  createEventParser,
  createSSEParser,
  parseField,
  parseAll,
  parseEventId,
  runIdFromLocation,
} from "../../static/sse.js";

const enc = new TextEncoder();
const bytes = (s) => enc.encode(s);

/** Split a Uint8Array at the given cut points. */
function cut(buf, points) {
  const out = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.slice(prev, p));
    prev = p;
  }
  out.push(buf.slice(prev));
  return out;
}

const simplify = (events) => events.map((e) => ({ type: e.type, data: e.data, id: e.id }));

describe("WHATWG spec examples", () => {
  test("multi-line data is joined with \\n (YHOO example)", () => {
    const stream = "data: YHOO\ndata: +2\ndata: 10\n\n";
    const { events } = parseAll([stream]);
    assert.equal(events.length, 1);
    assert.equal(events[0].type, "message");
    assert.equal(events[0].data, "YHOO\n+2\n10");
  });

  test("comment, ids, reset id, leading space kept (first/second/third event)", () => {
    const stream =
      ": test stream\n\n" +
      "data: first event\nid: 1\n\n" +
      "data:second event\nid\n\n" +
      "data:  third event\n\n";
    const { events, comments } = parseAll([stream]);
    assert.deepEqual(simplify(events), [
      { type: "message", data: "first event", id: "1" },
      { type: "message", data: "second event", id: "" },
      { type: "message", data: " third event", id: "" },
    ]);
    assert.deepEqual(comments, [" test stream"]);
  });

  test("the last event needs a blank line: end of stream does not dispatch it", () => {
    const { events } = parseAll(["data: first\n\ndata: unfinished\n"]);
    assert.deepEqual(events.map((e) => e.data), ["first"]);
    const { events: e2 } = parseAll(["data: first\n\ndata: no newline at all"]);
    assert.deepEqual(e2.map((e) => e.data), ["first"]);
  });

  test("data / data+data / data: example", () => {
    const stream = "data\n\ndata\ndata\n\ndata:";
    const { events } = parseAll([stream]);
    assert.deepEqual(events.map((e) => e.data), ["", "\n"]);
  });

  test("space after the colon: only one is removed, and only if present", () => {
    const stream = "data:test\n\ndata: test\n\ndata:  test\n\n";
    const { events } = parseAll([stream]);
    assert.deepEqual(events.map((e) => e.data), ["test", "test", " test"]);
  });

  test("event type field; default type is message; type resets after dispatch", () => {
    const stream = "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\ndata: plain\n\n";
    const { events } = parseAll([stream]);
    assert.deepEqual(
      events.map((e) => [e.type, e.data]),
      [
        ["add", "73857293"],
        ["remove", "2153"],
        ["message", "plain"],
      ],
    );
  });

  test("a frame with no data is not dispatched, and its event type is forgotten", () => {
    const { events } = parseAll(["event: lonely\n\ndata: x\n\n"]);
    assert.deepEqual(simplify(events), [{ type: "message", data: "x", id: "" }]);
  });

  test("id persists to later events; id with NUL is ignored; id-only frame still sets it", () => {
    const stream = "id: 7\n\ndata: a\n\nid: bad\u0000id\ndata: b\n\nid: 9\ndata: c\n\n";
    const { events } = parseAll([stream]);
    assert.deepEqual(
      events.map((e) => [e.data, e.id]),
      [
        ["a", "7"],
        ["b", "7"],
        ["c", "9"],
      ],
    );
  });

  test("retry accepts ASCII digits only; unknown fields are ignored", () => {
    const stream = "retry: 1500\nretry: 12a\nretry: -1\nfoo: bar\ndata: x\n\n";
    const { events, retries } = parseAll([stream]);
    assert.deepEqual(retries, [1500]);
    assert.equal(events.length, 1);
    assert.equal(events[0].data, "x");
  });

  test("field names are case-sensitive", () => {
    const { events } = parseAll(["Data: no\nEVENT: nope\ndata: yes\n\n"]);
    assert.deepEqual(simplify(events), [{ type: "message", data: "yes", id: "" }]);
  });

  test("a leading BOM is ignored", () => {
    const buf = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes("data: bom\n\n")]);
    const { events } = parseAll([buf]);
    assert.equal(events[0].data, "bom");
  });
});

describe("parseField", () => {
  test("splits at the first colon only", () => {
    assert.deepEqual(parseField('data: {"a":"b:c"}'), ["data", '{"a":"b:c"}']);
  });
  test("no colon: whole line is the field, value empty", () => {
    assert.deepEqual(parseField("data"), ["data", ""]);
  });
  test("comment lines return null", () => {
    assert.equal(parseField(": ping"), null);
  });
});

describe("line endings", () => {
  const want = [
    { type: "chat", data: "one", id: "" },
    { type: "chat", data: "two\nlines", id: "" },
  ];

  for (const [name, eol] of [
    ["LF", "\n"],
    ["CRLF", "\r\n"],
    ["CR", "\r"],
  ]) {
    test(`${name} line ends`, () => {
      const s = `event: chat${eol}data: one${eol}${eol}event: chat${eol}data: two${eol}data: lines${eol}${eol}`;
      assert.deepEqual(simplify(parseAll([s]).events), want);
    });
  }

  test("mixed line ends in one stream", () => {
    const s = "event: chat\r\ndata: one\r\revent: chat\ndata: two\rdata: lines\r\n\n";
    assert.deepEqual(simplify(parseAll([s]).events), want);
  });

  test("\\r at the end of one read and \\n at the start of the next is ONE line end", () => {
    const { events } = parseAll(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
    assert.deepEqual(events.map((e) => e.data), ["a\nb"]);
  });

  test("\\r at the end of a read followed by a non-\\n is still a line end", () => {
    const { events } = parseAll(["data: a\r", "data: b\r", "\r"]);
    assert.deepEqual(events.map((e) => e.data), ["a\nb"]);
  });

  test("\\r, then an empty read, then \\n: the \\n is not an extra blank line", () => {
    const lines = [];
    const splitter = createLineSplitter((l) => lines.push(l));
    splitter.push("x\r");
    splitter.push("");
    splitter.push("\ny\n");
    assert.deepEqual(lines, ["x", "y"]);
  });

  test("CRLF stream cut at every byte gives the same events", () => {
    const s = bytes("event: chat\r\ndata: one\r\n\r\nevent: chat\r\ndata: two\r\ndata: lines\r\n\r\n");
    for (let i = 0; i <= s.length; i++) {
      const { events } = parseAll(cut(s, [i]));
      assert.deepEqual(simplify(events), want, `split at byte ${i}`);
    }
  });

  test("CR-only stream cut at every pair of points gives the same events", () => {
    const s = bytes("event: chat\rdata: one\r\revent: chat\rdata: two\rdata: lines\r\r");
    for (let i = 0; i <= s.length; i++) {
      for (let j = i; j <= s.length; j++) {
        const { events } = parseAll(cut(s, [i, j]));
        assert.deepEqual(simplify(events), want, `split at ${i},${j}`);
      }
    }
  });
});

describe("UTF-8 split across reads", () => {
  const text = "café costs 5 € 😀 — ok";
  const frame = `event: chat\ndata: {"content":"${text}"}\n\n: ping\n\ndata: é€😀\n\n`;
  const buf = bytes(frame);

  test("the stream really contains 2-, 3- and 4-byte sequences", () => {
    assert.ok(buf.length > frame.length);
    assert.ok(buf.includes(0xf0)); // 4-byte lead for 😀
  });

  test("every single split point gives the same events", () => {
    for (let i = 0; i <= buf.length; i++) {
      const { events, comments } = parseAll(cut(buf, [i]));
      assert.equal(events.length, 2, `split at ${i}`);
      assert.equal(JSON.parse(events[0].data).content, text, `split at ${i}`);
      assert.equal(events[0].type, "chat");
      assert.equal(events[1].data, "é€😀", `split at ${i}`);
      assert.deepEqual(comments, [" ping"]);
    }
  });

  test("every pair of split points gives the same events", () => {
    for (let i = 0; i <= buf.length; i += 1) {
      for (let j = i; j <= buf.length; j += 3) {
        const { events } = parseAll(cut(buf, [i, j]));
        assert.equal(events.length, 2, `split at ${i},${j}`);
        assert.equal(JSON.parse(events[0].data).content, text);
        assert.equal(events[1].data, "é€😀");
      }
    }
  });

  test("one byte per read", () => {
    const chunks = Array.from(buf, (b) => new Uint8Array([b]));
    const { events } = parseAll(chunks);
    assert.equal(JSON.parse(events[0].data).content, text);
    assert.equal(events[1].data, "é€😀");
  });

  test("the decoder never emits a replacement character for a split sequence", () => {
    const euro = bytes("€"); // e2 82 ac
    const d = createDecoder();
    assert.equal(d.decode(euro.slice(0, 1)), "");
    assert.equal(d.decode(euro.slice(1, 2)), "");
    assert.equal(d.decode(euro.slice(2)), "€");
    assert.equal(d.end(), "");
  });

  test("a truncated sequence at end of stream becomes U+FFFD only on end()", () => {
    const d = createDecoder();
    assert.equal(d.decode(bytes("😀").slice(0, 2)), "");
    assert.equal(d.end(), "\ufffd");
  });
});

describe("comments", () => {
  test("comments are reported, not dispatched, and do not break a frame", () => {
    const events = [];
    const comments = [];
    const p = createSSEParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
    p.feed(": ping\n\nevent: chat\n: in the middle\ndata: x\n\n:\n\n");
    p.end();
    assert.deepEqual(comments, [" ping", " in the middle", ""]);
    assert.deepEqual(simplify(events), [{ type: "chat", data: "x", id: "" }]);
  });

  test("a comment split across reads is reported once, whole", () => {
    const comments = [];
    const p = createSSEParser({ onEvent: () => {}, onComment: (c) => comments.push(c) });
    p.feed(": pi");
    p.feed("ng\r");
    p.feed("\n");
    p.end();
    assert.deepEqual(comments, [" ping"]);
  });
});

describe("frames split anywhere", () => {
  test("one event split across three reads", () => {
    const events = [];
    const p = createSSEParser({ onEvent: (e) => events.push(e) });
    p.feed(bytes("eve"));
    assert.equal(events.length, 0);
    p.feed(bytes('nt: chat\ndata: {"type":"chat","con'));
    assert.equal(events.length, 0);
    p.feed(bytes('tent":"hi"}\n\n'));
    assert.equal(events.length, 1);
    assert.equal(events[0].type, "chat");
    assert.deepEqual(JSON.parse(events[0].data), { type: "chat", content: "hi" });
  });

  test("a realistic agent stream, cut at every point, gives identical events", () => {
    const frames = [
      ["start", { type: "start", request_id: "r1", intent: "chat", model: "m", provider: "offline" }],
      ["chat", { type: "chat", content: "Hel", streaming: true }],
      ["chat", { type: "chat", content: "lo \u00e9\u20ac", streaming: true }],
      ["done", { type: "done", finish_reason: "stop", usage: {}, timings: { ttft_ms: 1, total_ms: 2 } }],
    ];
    let s = "";
    for (const [i, [t, d]] of frames.entries()) {
      s += `event: ${t}\ndata: ${JSON.stringify(d)}\n\n`;
      if (i === 1) s += ": ping\n\n";
    }
    const buf = bytes(s);
    const whole = parseAll([buf]);
    assert.equal(whole.events.length, 4);
    for (let i = 0; i <= buf.length; i++) {
      const got = parseAll(cut(buf, [i]));
      assert.deepEqual(got.events, whole.events, `split at ${i}`);
      assert.deepEqual(got.comments, [" ping"]);
    }
  });

  test("events are dispatched as soon as their blank line arrives, not at end()", () => {
    const events = [];
    const p = createSSEParser({ onEvent: (e) => events.push(e) });
    p.feed("data: 1\n\ndata: 2\n");
    assert.equal(events.length, 1);
    p.feed("\n");
    assert.equal(events.length, 2);
  });
});

describe("createEventParser directly", () => {
  test("works on lines", () => {
    const events = [];
    const p = createEventParser({ onEvent: (e) => events.push(e) });
    for (const l of ["event: x", "data: 1", "id: 3", ""]) p.line(l);
    assert.deepEqual(events, [{ type: "x", data: "1", id: "3" }]);
    assert.equal(p.lastEventId, "3");
  });
});

describe("the server's frame ids and retry hint", () => {
  test("a run's frames: retry on the first, an id on each, none on a heartbeat", () => {
    const run = "0123456789abcdef0123456789abcdef";
    const stream =
      `retry: 2000\nid: ${run}-1\nevent: start\ndata: {"type":"start"}\n\n` +
      ": ping\n\n" +
      `id: ${run}-2\nevent: chat\ndata: {"type":"chat"}\n\n`;
    const { events, comments, retries } = parseAll([stream]);
    assert.deepEqual(retries, [2000]);
    assert.deepEqual(comments, [" ping"]);
    assert.deepEqual(events.map((e) => [e.type, e.id]), [["start", `${run}-1`], ["chat", `${run}-2`]]);
    assert.deepEqual(events.map((e) => parseEventId(e.id)), [{ runId: run, seq: 1 }, { runId: run, seq: 2 }]);
  });

  test("parseEventId: <run>-<seq> only", () => {
    assert.deepEqual(parseEventId("abc-12"), { runId: "abc", seq: 12 });
    assert.deepEqual(parseEventId("a-b-0"), { runId: "a-b", seq: 0 });
    for (const bad of ["", "12", "-3", "abc-", "abc-1.5", "abc--1", "abc-x", "ab c-1", "abc-1\u0000", null, 7]) {
      assert.equal(parseEventId(bad), null, JSON.stringify(bad));
    }
  });

  test("runIdFromLocation reads the join URL of Content-Location", () => {
    assert.equal(runIdFromLocation("/api/agent/scenario/runs/ab12/stream"), "ab12");
    assert.equal(runIdFromLocation("http://127.0.0.1:8000/api/agent/scenario/runs/ab12/stream?after=3"), "ab12");
    assert.equal(runIdFromLocation("/api/agent/scenario/stream"), null);
    assert.equal(runIdFromLocation(null), null);
  });
});
