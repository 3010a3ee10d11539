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

/** Feed `text` in pieces, collecting committed blocks; return them + the final live blocks. */
function streamed(text, cuts, byPiece = false, options = undefined) {
  const stream = createBlockStream(options);
  const committed = [];
  let live = [];
  let parsedTo = 0; // the text length at the last re-parse
  let deferred = "";
  let at = 0;
  for (const c of [...cuts, text.length]) {
    const { commit, live: l, deferred: d, reset } = byPiece ? stream.append(text.slice(at, c)) : stream.update(text.slice(0, c));
    assert.equal(reset, false);
    committed.push(...commit);
    if (l === null) {
      deferred += d;
    } else {
      live = l;
      parsedTo = c;
      deferred = "";
      // Between re-parses, what is shown is exactly the blocks of the text so far.
      assert.deepEqual([...committed, ...live], parseBlocks(text.slice(0, c)), `at ${c}`);
    }
    assert.equal(stream.pending, deferred.length);
    at = c;
  }
  assert.equal(at, text.length);
  // The deferred pieces are the rest of the text, and a flush brings the blocks up to date.
  assert.equal(text.slice(0, parsedTo) + deferred, text);
  const last = stream.flush();
  assert.equal(stream.pending, 0);
  return [...committed, ...last.commit, ...last.live];
}


describe("incremental blocks", () => {
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

// ---- adversarial text: every step linear ----------------------------------------------

/** `pattern` repeated to exactly `n` characters. */
const repeat = (pattern, n) => pattern.repeat(Math.ceil(n / pattern.length)).slice(0, n);

// Text that made the earlier parser search to the end once per opener (cubic when streamed).
const ADVERSARIAL = {
  emphasis: "*a ",
  underscore: "_a ",
  strong: "**a ",
  closedEmphasis: "*a* ",
  mixedDelimiters: "*a _b **c __d ",
  backticks: "` `` ``` ",
  tickRun: "`",
  links: "[a](",
  linkNoParen: "[a](http://x",
  brackets: "[[",
  closedBrackets: "[a] ",
  escapes: "\\*a \\_",
  nestedLists: "- a\n  - b\n  continued *c\n",
  orderedLists: "1. a *b\n   2. c _d\n",
  quotes: "> > a *b\n",
  quoteLists: "> - a [b](\n",
  headingTabs: "# a \t",
  fenceInfo: "```a`",
  paragraphLines: "a *b\nc _d\n",
};

/**
 * Stream `text` in `size`-character pieces the way the page does: each re-parse's live blocks
 * through parseInline and JSON.stringify (the view's change key), then a final flush.
 * Returns the time taken, the characters re-parsed in all, and the blocks; stops early once
 * `budgetMs` is spent (the earlier parser would take minutes).
 */
function streamCost(text, size = 8, budgetMs = 2000) {
  const stream = createBlockStream();
  const committed = [];
  let live = [];
  let work = 0;
  let length = 0;
  const take = ({ commit, live: l }) => {
    for (const b of commit) if (b.text !== undefined) parseInline(b.text);
    committed.push(...commit);
    if (l === null) return;
    live = l;
    if (l.length) work += length - l[0].from;
    for (const b of l) {
      if (b.text !== undefined) parseInline(b.text);
      for (const item of b.items || []) parseInline(item.text);
    }
    JSON.stringify(l);
  };
  const t0 = performance.now();
  let done = true;
  for (let at = 0; at < text.length; at += size) {
    const piece = text.slice(at, at + size);
    length += piece.length;
    take(stream.append(piece));
    if (performance.now() - t0 > budgetMs) {
      done = false;
      break;
    }
  }
  if (done) take(stream.flush());
  return { ms: performance.now() - t0, work, done, blocks: [...committed, ...live] };
}

describe("adversarial text", () => {
  const N = 16000;

  test("16k characters of each pattern, streamed in 8-character pieces: under 500 ms, linear work", () => {
    const figures = [];
    streamCost(repeat("*a ", N)); // the engine compiles the parser on a first pass
    for (const [name, pattern] of Object.entries(ADVERSARIAL)) {
      const text = repeat(pattern, N);
      const { ms, work, done, blocks } = streamCost(text);
      figures.push(`${name} ${ms.toFixed(0)} ms`);
      assert.ok(done, `${name}: not finished within the budget`);
      assert.ok(ms < 500, `${name}: ${ms.toFixed(0)} ms`);
      // Linear: the live blocks re-parsed add up to a bounded multiple of the text (about 9 N
      // for one long block, plus 1,024 per piece at first; with a re-parse per piece they
      // added up to about N²/16: 16 million characters here).
      assert.ok(work < 20 * N, `${name}: ${work} characters re-parsed for ${N}`);
      assert.deepEqual(blocks, parseBlocks(text), name);
    }
    console.log(`  streamed 16k in 8-character pieces: ${figures.join(", ")}`);
  });

  test("one parse of 64k characters of each pattern stays proportional", () => {
    for (const [name, pattern] of Object.entries(ADVERSARIAL)) {
      const time = (n) => {
        const text = repeat(pattern, n);
        const t0 = performance.now();
        for (const b of parseBlocks(text)) {
          if (b.text !== undefined) parseInline(b.text);
          for (const item of b.items || []) parseInline(item.text);
        }
        return performance.now() - t0;
      };
      time(16000);
      const ms = time(64000);
      assert.ok(ms < 250, `${name}: ${ms.toFixed(0)} ms for one parse of 64k`);
    }
  });

  test("any chunking of adversarial and long text gives the same blocks (property)", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const texts = [
      ...Object.values(ADVERSARIAL).map((p) => repeat(p, 600)),
      SAMPLE.repeat(3),
      repeat("para *a* b\n\n- x\n  - y\n```\ncode\n```\n", 900),
    ];
    for (const text of texts) {
      for (let trial = 0; trial < 40; trial++) {
        const cuts = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 40) }, () => 1 + Math.floor(rand() * (text.length - 1))))].sort((a, b) => a - b);
        // A small `eager` makes short texts take the deferred path too.
        const options = trial % 3 === 0 ? undefined : { eager: 1 + Math.floor(rand() * 64), catchUp: 1 + Math.floor(rand() * 8) };
        assert.deepEqual(streamed(text, cuts, trial % 2 === 1, options), parseBlocks(text), `cuts ${cuts} ${JSON.stringify(options)}`);
      }
    }
  });

  test("a long open block is re-parsed as it grows by a fraction, not per piece", () => {
    const stream = createBlockStream();
    const text = repeat("word ", 16000);
    let parses = 0;
    let shownUpTo = 0;
    for (let at = 0; at < text.length; at += 8) {
      const { live } = stream.append(text.slice(at, at + 8));
      if (live !== null) {
        parses += 1;
        shownUpTo = at + 8;
      }
      // What is not parsed yet is at most 1/8 of the block (plus the piece that crossed it).
      assert.ok(Math.min(at + 8, text.length) - shownUpTo <= (at + 8) / 8 + 8);
    }
    // 128 pieces up to the first 1,024 characters, then about ln(16)/ln(1 + 1/8) = 24 more.
    assert.ok(parses < 128 + 30, `${parses} parses`);
  });
});

describe("inline: the pairing rules", () => {
  test("escaped delimiters neither open nor close; code spans bind before emphasis", () => {
    assert.equal(plainText(parseInline("*a \\* b*")), "a * b");
    assert.deepEqual(parseInline("*a \\*"), [{ type: "text", text: "*a *" }]);
    assert.deepEqual(parseInline("*a `b*` c*")[0].type, "em");
    assert.equal(plainText(parseInline("*a `b*` c*")), "a b* c");
    assert.deepEqual(parseInline("``a ` b``"), [{ type: "code", text: "a ` b" }]);
    assert.deepEqual(parseInline("`a ``b"), [{ type: "text", text: "`a ``b" }]);
  });

  test("links: nested brackets, <targets>, a title after the target, a bracket in code", () => {
    const [link] = parseInline("[a [b] c](<https://x.y/z> \"t\")");
    assert.equal(link.href, "https://x.y/z");
    assert.equal(plainText(link.children), "a [b] c");
    assert.equal(plainText(parseInline("[a `]` b](https://x.y)")), "a ] b");
    assert.equal(parseInline("[a](https://x.y<b)")[0].type, "text");
    assert.equal(parseInline("[a](https://)")[0].type, "text");
    assert.equal(parseInline("[a\n\nb](https://x.y)")[0].type, "text");
  });

  test("nesting deeper than the cap stays literal text", () => {
    const deep = "[".repeat(40) + "x" + "](https://x.y)".repeat(40);
    let depth = 0;
    let spans = parseInline(deep);
    while (spans.some((s) => s.type === "link")) {
      spans = spans.find((s) => s.type === "link").children;
      depth += 1;
    }
    assert.ok(depth >= 8 && depth <= 16, `depth ${depth}`);
    assert.ok(plainText(parseInline(deep)).includes("x"));
  });

  test("headings and fences: closing hashes, info strings, long lines", () => {
    assert.deepEqual(strip(parseBlocks("## a ## ##\n# #\n#\t b \t##\t")), [
      { type: "heading", level: 2, text: "a ##" },
      { type: "heading", level: 1, text: "" },
      { type: "heading", level: 1, text: "b" },
    ]);
    assert.deepEqual(types("####### seven"), ["paragraph"]);
    assert.deepEqual(strip(parseBlocks("~~~ js extra\nx\n~~~")), [{ type: "code", lang: "js", text: "x", closed: true }]);
    assert.deepEqual(types("```a`b\ntext"), ["paragraph"], "a backtick in a backtick fence's info string: no fence");
  });
});
