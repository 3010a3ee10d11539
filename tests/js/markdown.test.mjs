// Unit tests for static/markdown.js (parsing only; the DOM side is checked in Chromium).
// Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { createBlockStream, parseBlocks, parseInline, plainText, safeUrl } from "../../static/markdown.js";

const types = (text) => parseBlocks(text).map((b) => b.type);
const strip = (blocks) => blocks.map(({ from, ...rest }) => rest);

const SAMPLE = [
  "# Blue Harbor Drill",
  "",
  "An **advanced** exercise with *three* roles and `5` steps. See [the guide](https://example.org/guide).",
  "It runs for two hours.",
  "",
  "## Roles",
  "- **Commander**: leads the response",
  "- Safety Officer",
  "  - checks exits",
  "  continues the item",
  "- Scribe",
  "",
  "1. Alarm",
  "2. Evacuate",
  "",
  "```json",
  '{"title": "x",',
  "",
  ' "roles": []}',
  "```",
  "> A quote",
  "---",
  "Raw <script>alert(1)</script> and <img src=x onerror=alert(1)> stay text.",
  "",
  "~~~",
  "unclosed fence until the end",
].join("\n");

describe("blocks", () => {
  test("headings, paragraphs, lists, code, quote, rule", () => {
    assert.deepEqual(types(SAMPLE), ["heading", "paragraph", "heading", "list", "list", "code", "quote", "hr", "paragraph", "code"]);
    const b = parseBlocks(SAMPLE);
    assert.deepEqual(b[0], { type: "heading", from: 0, level: 1, text: "Blue Harbor Drill" });
    assert.equal(b[1].text.split("\n").length, 2);
    assert.equal(b[3].ordered, false);
    assert.deepEqual(b[3].items.map((i) => i.text), ["**Commander**: leads the response", "Safety Officer", "Scribe"]);
    assert.deepEqual(b[3].items[1].children, [{ text: "checks exits\ncontinues the item" }]);
    assert.equal(b[4].ordered, true);
    assert.equal(b[4].start, 1);
    assert.equal(b[5].lang, "json");
    assert.equal(b[5].text, '{"title": "x",\n\n "roles": []}');
    assert.equal(b[5].closed, true);
    assert.equal(b[9].closed, false);
    assert.equal(b[9].text, "unclosed fence until the end");
    assert.ok(b[8].text.includes("<script>alert(1)</script>"));
  });

  test("from offsets point at each block's first line", () => {
    for (const b of parseBlocks(SAMPLE)) assert.notEqual(SAMPLE.slice(b.from).trim(), "", b.type);
    const b = parseBlocks("a\n\n# h\n");
    assert.deepEqual(b.map((x) => x.from), [0, 3]);
  });

  test("an ordered list can start anywhere; '#x' is no heading; CRLF lines", () => {
    const [list] = parseBlocks("3. three\n4. four");
    assert.equal(list.start, 3);
    assert.deepEqual(types("#x\nnot a heading"), ["paragraph"]);
    assert.deepEqual(types("para\r\n\r\n- a\r\n- b\r\n"), ["paragraph", "list"]);
    assert.deepEqual(types("text\n2. not a list here"), ["paragraph"], "a number other than 1 does not interrupt a paragraph");
    assert.deepEqual(types("- a\n\n- b"), ["list"], "a blank line between items keeps one list");
    assert.deepEqual(types("- a\n1. b"), ["list", "list"]);
  });
});

describe("inline", () => {
  test("bold, italics, code, links", () => {
    assert.deepEqual(parseInline("a **b** *c* _d_ __e__ `f*g*` [h](https://x.y/z)"), [
      { type: "text", text: "a " },
      { type: "strong", children: [{ type: "text", text: "b" }] },
      { type: "text", text: " " },
      { type: "em", children: [{ type: "text", text: "c" }] },
      { type: "text", text: " " },
      { type: "em", children: [{ type: "text", text: "d" }] },
      { type: "text", text: " " },
      { type: "strong", children: [{ type: "text", text: "e" }] },
      { type: "text", text: " " },
      { type: "code", text: "f*g*" },
      { type: "text", text: " " },
      { type: "link", href: "https://x.y/z", children: [{ type: "text", text: "h" }] },
    ]);
  });

  test("only http(s) links; others stay literal text", () => {
    for (const bad of ["javascript:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "/relative", "file:///etc/passwd", "JaVaScRiPt:alert(1)"]) {
      const spans = parseInline(`[click](${bad})`);
      assert.ok(spans.every((s) => s.type === "text"), bad);
      assert.equal(plainText(spans), `[click](${bad})`);
    }
    assert.equal(safeUrl("HTTP://EXAMPLE.ORG"), "HTTP://EXAMPLE.ORG");
    assert.equal(safeUrl("https://a b"), null);
  });

  test("unclosed delimiters stay as typed (a half-streamed token reads naturally)", () => {
    for (const s of ["**bo", "*it", "`code", "[link](https://x", "a * b * c", "snake_case_name", "window.__pwned=1"]) {
      assert.equal(plainText(parseInline(s)), s, s);
    }
    assert.equal(plainText(parseInline("\\*not em\\*")), "*not em*");
  });

  test("raw HTML is text", () => {
    const spans = parseInline("<script>alert(1)</script> <b>x</b>");
    assert.deepEqual(spans, [{ type: "text", text: "<script>alert(1)</script> <b>x</b>" }]);
  });

  test("nesting and line breaks", () => {
    const spans = parseInline("**bold *and it***\nnext");
    assert.equal(spans[0].type, "strong");
    assert.ok(spans.some((s) => s.type === "break"));
    assert.equal(plainText(spans), "bold and it\nnext");
  });
});

describe("incremental blocks", () => {
  /** Feed `text` in pieces, collecting committed blocks; return them + the final live blocks. */
  function streamed(text, cuts, byPiece = false) {
    const stream = createBlockStream();
    const committed = [];
    let live = [];
    let at = 0;
    for (const c of [...cuts, text.length]) {
      const { commit, live: l, reset } = byPiece ? stream.append(text.slice(at, c)) : stream.update(text.slice(0, c));
      assert.equal(reset, false);
      committed.push(...commit);
      live = l;
      at = c;
    }
    assert.equal(at, text.length);
    return [...committed, ...live];
  }

  test("one character at a time gives the same blocks as one parse", () => {
    const cuts = [...Array(SAMPLE.length).keys()].slice(1);
    assert.deepEqual(streamed(SAMPLE, cuts), parseBlocks(SAMPLE));
    assert.deepEqual(streamed(SAMPLE, cuts, true), parseBlocks(SAMPLE), "append(piece) gives the same");
  });

  test("any chunking gives the same blocks (seeded random cuts)", () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const texts = [SAMPLE, "p\n#\n#x\n# h\n- a\n  b\n\n- c\nq\n```\nx\n```\ny", "**a**\n\n***\n- - -\n* x\n*y*"];
    for (const text of texts) {
      for (let trial = 0; trial < 200; trial++) {
        const cuts = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 12) }, () => 1 + Math.floor(rand() * (text.length - 1))))].sort((a, b) => a - b);
        assert.deepEqual(streamed(text, cuts, trial % 2 === 1), parseBlocks(text), `cuts ${cuts}`);
      }
    }
  });

  test("earlier blocks are committed once and the live tail stays small", () => {
    const stream = createBlockStream();
    let commits = 0;
    let maxLive = 0;
    const text = Array.from({ length: 50 }, (_, i) => `Paragraph ${i} with **some** words.\n\n`).join("");
    for (let i = 1; i <= text.length; i++) {
      const { commit, live } = stream.update(text.slice(0, i));
      commits += commit.length;
      maxLive = Math.max(maxLive, live.length);
    }
    assert.equal(commits, 49);
    assert.ok(maxLive <= 2, `live blocks ${maxLive}`);
  });

  test("a text that does not extend the previous one starts over", () => {
    const stream = createBlockStream();
    stream.update("# a\n\nb\n\nc");
    const again = stream.update("other");
    assert.equal(again.reset, true);
    assert.deepEqual(strip(again.live), [{ type: "paragraph", text: "other" }]);
  });
});
