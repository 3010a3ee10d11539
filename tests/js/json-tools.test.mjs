// Unit tests for static/json-tools.js and the DOM-free parts of static/store.js.
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import {
  checkScenarioText,
  depth,
  diff,
  lineColumn,
  parentPointer,
  parseJson,
  parsePointer,
  pointer,
  validateScenario,
} from "../../static/json-tools.js";
import { buildHistory, canRedo, canUndo, emptyState, pushVersion, trim } from "../../static/store.js";

describe("parseJson error positions", () => {
  const cases = [
    ['{"title": "A",\n  "roles": [1, 2,]\n}', 2, 18, /Trailing comma/],
    ['{"title": "A"\n  "summary": "x"}', 2, 3, /Expected ',' or '}'/],
    ["{\n  'title': 'A'\n}", 2, 3, /double quotes/],
    ['{"title": "A",\n', 1, 1, /not closed/],
    ['{"title": "A}', 1, 11, /string .* not closed/],
    ["", 1, 1, /empty/],
    ['{"a": tru}', 1, 7, /expected a value/],
    ['{"a": 01}', 1, 7, /leading zeros/],
    ['{"a": 1} x', 1, 10, /after the end/],
    ['{"a": "line\nbreak"}', 1, 12, /escaped/],
    ['{"a": "\\x"}', 1, 8, /Invalid escape/],
    ['[1 2]', 1, 4, /Expected ',' or '\]'/],
  ];
  for (const [text, line, column, message] of cases) {
    test(JSON.stringify(text), () => {
      const r = parseJson(text);
      assert.equal(r.ok, false);
      assert.match(r.error.message, message);
      assert.deepEqual([r.error.line, r.error.column], [line, column]);
    });
  }

  test("valid JSON parses to the same value as JSON.parse", () => {
    const text = '{"title": "Café €", "n": -1.5e3, "l": [true, false, null, {"x": "\\u00e9\\n"}]}';
    assert.deepEqual(parseJson(text), { ok: true, value: JSON.parse(text) });
  });

  test("lineColumn counts CRLF as one line end", () => {
    assert.deepEqual(lineColumn("a\r\nb\rc\nd", 7), { line: 4, column: 1 });
    assert.deepEqual(lineColumn("abc", 2), { line: 1, column: 3 });
  });
});

describe("validateScenario", () => {
  test("title is required", () => {
    const { errors } = validateScenario({ summary: "x" });
    assert.deepEqual(errors, [{ path: "/title", message: "title is required" }]);
  });
  test("title must be a non-empty string", () => {
    assert.equal(validateScenario({ title: 3 }).errors[0].message, "title must be a string");
    assert.equal(validateScenario({ title: "  " }).errors[0].message, "title must not be empty");
  });
  test("must be an object", () => {
    assert.match(validateScenario([1]).errors[0].message, /JSON object/);
    assert.match(validateScenario(null).errors[0].message, /JSON object/);
  });
  test("depth limit like the server's", () => {
    let deep = { title: "x" };
    let cur = deep;
    for (let i = 0; i < 33; i++) cur = cur.next = {};
    assert.match(validateScenario(deep).errors[0].message, /deeper than 32/);
    assert.equal(depth(1), 0);
    assert.equal(depth({}), 1);
    assert.equal(depth({ a: [1] }), 2);
  });
  test("odd shapes are warnings, not errors", () => {
    const r = validateScenario({ title: "x", roles: [{ description: "no name" }], objectives: [1], steps: "nope" });
    assert.equal(r.errors.length, 0);
    assert.deepEqual(
      r.warnings.map((w) => w.path),
      ["/roles/0", "/steps", "/objectives/0"],
    );
  });
  test("checkScenarioText combines syntax and validation", () => {
    assert.equal(checkScenarioText('{"title": "ok"}').ok, true);
    const bad = checkScenarioText('{"summary": "no title"}');
    assert.equal(bad.ok, false);
    assert.equal(bad.syntax, null);
    assert.equal(bad.errors[0].message, "title is required");
    const broken = checkScenarioText('{"title": }');
    assert.equal(broken.ok, false);
    assert.equal(broken.syntax.column, 11);
  });
});

describe("JSON Pointer and diff", () => {
  test("pointer escaping round-trips", () => {
    const p = pointer(["a/b", "c~d", 2]);
    assert.equal(p, "/a~1b/c~0d/2");
    assert.deepEqual(parsePointer(p), ["a/b", "c~d", "2"]);
    assert.equal(parentPointer("/roles/2/name"), "/roles/2");
    assert.equal(parentPointer("/title"), "");
  });

  test("diff matches the server's format and order", () => {
    const a = { title: "A", roles: [{ name: "x" }, { name: "y" }], gone: 1, objectives: ["o"] };
    const b = { title: "B", roles: [{ name: "x" }, { name: "z" }, { name: "w" }], objectives: [], extra: true };
    assert.deepEqual(diff(a, b), [
      { op: "remove", path: "/gone" },
      { op: "replace", path: "/title" },
      { op: "replace", path: "/roles/1/name" },
      { op: "add", path: "/roles/2" },
      { op: "remove", path: "/objectives/0" },
      { op: "add", path: "/extra" },
    ]);
    assert.deepEqual(diff(a, a), []);
    assert.deepEqual(diff({ a: [1] }, { a: { 0: 1 } }), [{ op: "replace", path: "/a" }]);
  });
});

describe("store helpers", () => {
  test("versions: push, undo/redo bounds, redo branch dropped", () => {
    const s = emptyState();
    assert.equal(canUndo(s), false);
    pushVersion(s, { title: "1" }, [], "sample");
    pushVersion(s, { title: "2" }, [{ op: "replace", path: "/title" }], "agent");
    assert.equal(s.index, 1);
    assert.equal(canUndo(s), true);
    s.index = 0;
    assert.equal(canRedo(s), true);
    pushVersion(s, { title: "3" }, [], "edit");
    assert.deepEqual(
      s.versions.map((v) => v.scenario.title),
      ["1", "3"],
    );
    assert.equal(canRedo(s), false);
  });

  test("trim keeps the current version", () => {
    const s = emptyState();
    for (let i = 0; i < 10; i++) pushVersion(s, { title: String(i) }, [], "x");
    s.index = 2;
    trim(s, 3, 10);
    assert.equal(s.versions[s.index].scenario.title, "2");
    assert.ok(s.versions.length <= 3);
  });

  test("history: only {role, content}, failed answers left out, stopped kept", () => {
    const messages = [
      { id: "1", role: "user", content: "q1", status: "complete" },
      { id: "2", role: "assistant", content: "partial", status: "error", error: {} },
      { id: "3", role: "assistant", content: "a1", status: "complete", intent: "chat" },
      { id: "4", role: "user", content: "q2", status: "complete" },
      { id: "5", role: "assistant", content: "half", status: "stopped" },
      { id: "6", role: "assistant", content: "", status: "complete" },
    ];
    assert.deepEqual(buildHistory(messages), [
      { role: "user", content: "q1" },
      { role: "assistant", content: "a1" },
      { role: "user", content: "q2" },
      { role: "assistant", content: "half" },
    ]);
  });

  test("history stays within the turn and size limits", () => {
    const messages = Array.from({ length: 120 }, (_, i) => ({
      id: String(i),
      role: i % 2 ? "assistant" : "user",
      content: "x".repeat(2000),
      status: "complete",
    }));
    const h = buildHistory(messages);
    assert.ok(h.length <= 40);
    assert.ok(new TextEncoder().encode(JSON.stringify(h)).length <= 48 * 1024);
    assert.equal(h[h.length - 1].role, "assistant");
  });
});
