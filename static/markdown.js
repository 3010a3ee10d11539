// Markdown as a model writes it, parsed into plain data (no DOM here):
//
//   parseBlocks(text)   -> [{type, from, ...}]   the blocks, each with the offset it starts at
//   parseInline(text)   -> [{type, ...}]         spans inside a paragraph, heading or list item
//   createBlockStream() -> {append, update,      the same blocks for a growing text, telling
//                           flush}               which are final (`commit`) and which may still
//                                                 change (`live`), re-parsing a long open block
//                                                 only as it grows by a fraction of its length
//
// Every step costs about the length of the text it reads (at most a binary search more per
// delimiter): streaming a text of any content in small pieces costs a bounded multiple of one
// parse of it, plus re-parsing each block's first kilobyte per piece
// (tests/js/markdown.test.mjs measures adversarial patterns).
//
// The subset: ATX headings (# .. ######), paragraphs, **bold** / __bold__, *italics* / _italics_,
// `inline code`, fenced code blocks (``` or ~~~, an unclosed fence runs to the end), bullet and
// numbered lists (one level of nesting), block quotes, thematic breaks and [links](http://...).
// Link targets are kept only when they are http(s): anything else stays literal text.
// Nothing here produces HTML: raw HTML in the text is text (markdown-view.js builds DOM nodes).
//
// Blocks never depend on what follows their end (no setext headings, no reference links), so
// parsing can restart at any block start: parseBlocks(a + b) equals the blocks of `a` that
// ended before b's first block, followed by parseBlocks(b). createBlockStream relies on it.

// Line patterns are anchored and never try overlapping repetitions, so a long line costs time
// linear in its length (a heading or fence line of 16 k spaces, tabs or backticks included).
const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})/;
const FENCE_CLOSE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
const LANG = /^[^`\s]*/;
const HEADING_OPEN = /^ {0,3}(#{1,6})(?=[ \t]|$)/;
const HR = /^ {0,3}([-*_])[ \t]*(?:\1[ \t]*){2,}$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*)|$)/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const BLANK = /^[ \t]*$/;

/** Lines with their start offsets; a final line without "\n" is included (it may be partial). */
function splitLines(text) {
  const lines = [];
  let at = 0;
  while (at <= text.length) {
    const nl = text.indexOf("\n", at);
    const end = nl === -1 ? text.length : nl;
    let line = text.slice(at, end);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (nl === -1) {
      if (end > at) lines.push({ text: line, from: at });
      break;
    }
    lines.push({ text: line, from: at });
    at = nl + 1;
  }
  return lines;
}

/** An opening fence: {marker, lang}, or null. Its info string may not hold a backtick. */
function fenceOf(line) {
  const m = FENCE_OPEN.exec(line);
  if (!m) return null;
  const rest = line.slice(m[0].length);
  if (rest.includes("`")) return null;
  let p = 0;
  while (rest[p] === " " || rest[p] === "\t") p += 1;
  return { marker: m[1], lang: LANG.exec(rest.slice(p))[0] };
}

/** An ATX heading: {level, text}, or null. A closing run of # after a space is dropped. */
function headingOf(line) {
  const m = HEADING_OPEN.exec(line);
  if (!m) return null;
  const rest = line.slice(m[0].length);
  const blank = (c) => c === " " || c === "\t";
  let end = rest.length;
  while (end > 0 && blank(rest[end - 1])) end -= 1;
  let hashes = end;
  while (hashes > 0 && rest[hashes - 1] === "#") hashes -= 1;
  if (hashes < end && hashes > 0 && blank(rest[hashes - 1])) end = hashes;
  return { level: m[1].length, text: rest.slice(0, end).trim() };
}

function itemOf(line) {
  const m = ITEM.exec(line);
  if (!m) return null;
  const ordered = /\d/.test(m[2][0]);
  return { indent: m[1].length, ordered, start: ordered ? parseInt(m[2], 10) : null, text: m[3] ?? "", markerWidth: m[1].length + m[2].length + 1 };
}

/** Would this line start a block other than a paragraph (so it ends a paragraph)? */
function startsBlock(line) {
  if (HEADING_OPEN.test(line) || fenceOf(line) || HR.test(line) || QUOTE.test(line)) return true;
  const item = itemOf(line);
  // An empty item, or a number other than 1, does not interrupt a paragraph (as in CommonMark).
  return Boolean(item && item.indent < 2 && item.text !== "" && (!item.ordered || item.start === 1));
}

/**
 * The blocks of `text`. Each block: {type, from} and
 *   heading   {level, text}
 *   paragraph {text}                lines joined with "\n"
 *   code      {lang, text, closed}
 *   list      {ordered, start, items: [{text, children: [{text}] , childOrdered}]}
 *   quote     {text}
 *   hr        {}
 */
export function parseBlocks(text) {
  const lines = splitLines(text);
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const { text: line, from } = lines[i];
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    const fence = fenceOf(line);
    if (fence) {
      const { marker } = fence;
      const body = [];
      let closed = false;
      i += 1;
      while (i < lines.length) {
        const l = lines[i].text;
        const close = FENCE_CLOSE.exec(l);
        i += 1;
        if (close && close[1][0] === marker[0] && close[1].length >= marker.length) {
          closed = true;
          break;
        }
        body.push(l);
      }
      blocks.push({ type: "code", from, lang: fence.lang, text: body.join("\n"), closed });
      continue;
    }
    const heading = headingOf(line);
    if (heading) {
      blocks.push({ type: "heading", from, level: heading.level, text: heading.text });
      i += 1;
      continue;
    }
    if (HR.test(line)) {
      blocks.push({ type: "hr", from });
      i += 1;
      continue;
    }
    const first = itemOf(line);
    if (first && first.indent < 2) {
      const list = { type: "list", from, ordered: first.ordered, start: first.start, items: [] };
      let current = null;
      let blankBefore = false;
      while (i < lines.length) {
        const l = lines[i].text;
        if (BLANK.test(l)) {
          blankBefore = true;
          i += 1;
          continue;
        }
        const item = itemOf(l);
        if (item && item.indent < 2 && item.ordered === list.ordered) {
          current = { text: item.text, children: [], childOrdered: false };
          list.items.push(current);
          blankBefore = false;
          i += 1;
          continue;
        }
        if (item && item.indent >= 2 && current) {
          if (current.children.length === 0) current.childOrdered = item.ordered;
          current.children.push({ text: item.text });
          blankBefore = false;
          i += 1;
          continue;
        }
        const indented = /^ {2,}\S/.test(l);
        if (current && (indented || (!blankBefore && !startsBlock(l) && !item))) {
          // A continuation line of the last item (or of its last child).
          const target = current.children.length && indented ? current.children[current.children.length - 1] : current;
          target.text += (target.text ? "\n" : "") + l.trim();
          blankBefore = false;
          i += 1;
          continue;
        }
        break;
      }
      blocks.push(list);
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length) {
        const q = QUOTE.exec(lines[i].text);
        if (!q) break;
        body.push(q[1]);
        i += 1;
      }
      blocks.push({ type: "quote", from, text: body.join("\n") });
      continue;
    }
    const body = [line.trim()];
    i += 1;
    while (i < lines.length && !BLANK.test(lines[i].text) && !startsBlock(lines[i].text)) {
      body.push(lines[i].text.trim());
      i += 1;
    }
    blocks.push({ type: "paragraph", from, text: body.join("\n") });
  }
  return blocks;
}

/**
 * Blocks of a text that grows at its end (a streaming answer). Each call returns
 * {commit, live, deferred, reset}:
 *   commit    blocks that are final: nothing appended later can change them (render them once);
 *   live      the blocks after them, re-parsed (the growing last block, and a block whose first
 *             line is still partial); null when this call did not re-parse: the previous `live`
 *             stands, and `deferred` is the text appended since, not parsed yet;
 *   reset     true when the text did not extend the previous one: start over (render from scratch).
 * The committed blocks of all calls, then the last non-null `live`, equal parseBlocks() of the
 * text up to the last re-parse; the `deferred` pieces since then are the rest of the text.
 * `flush()` re-parses now: after it, committed + live equal parseBlocks(text). Offsets (`from`)
 * are relative to the whole text.
 *
 * Re-parsing the open block on every token costs its length each time: a single block of
 * length L streamed in pieces would cost L²/piece in all. So a tail longer than `eager`
 * characters is re-parsed only once it has grown by 1/`catchUp` since its last parse (and on
 * flush): the parses of one block then add up to about catchUp + 1 times its length, linear.
 *
 * `append(piece)` is the per-token call: it touches only the uncommitted tail, never the whole
 * text (reading a long string that grew by `+=` makes the engine copy all of it, every token).
 * `update(text)` takes the whole text so far and appends what is new.
 */
export function createBlockStream({ eager = 1024, catchUp = 8 } = {}) {
  let seenLength = 0;
  let base = 0; // where the first uncommitted block starts in the whole text
  let tail = ""; // the text from `base` on
  let parsed = 0; // how much of `tail` the last re-parse saw

  function step(reset) {
    // Only complete lines decide where a block ends: a partial last line such as "#" may
    // still become "#x", which would continue the paragraph above it.
    const completeEnd = tail.lastIndexOf("\n") + 1;
    const commit = [];
    if (completeEnd > 0) {
      const settled = parseBlocks(tail.slice(0, completeEnd));
      for (let k = 0; k < settled.length - 1; k++) commit.push({ ...settled[k], from: settled[k].from + base });
      if (settled.length > 1) {
        const cut = settled[settled.length - 1].from;
        tail = tail.slice(cut);
        base += cut;
      }
    }
    const live = parseBlocks(tail).map((b) => ({ ...b, from: b.from + base }));
    parsed = tail.length;
    return { commit, live, deferred: "", reset };
  }

  function grow(piece) {
    tail += piece;
    seenLength += piece.length;
    if (tail.length <= eager || (tail.length - parsed) * catchUp >= tail.length) return step(false);
    return { commit: [], live: null, deferred: piece, reset: false };
  }

  return {
    append(piece) {
      return grow(piece);
    },
    update(text) {
      // An extension keeps the committed blocks: the uncommitted tail must still match.
      if (text.length >= seenLength && text.startsWith(tail, base)) return grow(text.slice(seenLength));
      base = 0;
      tail = text;
      seenLength = text.length;
      return step(true);
    },
    flush() {
      return step(false);
    },
    /** Characters appended since the last re-parse (0: the last `live` is up to date). */
    get pending() {
      return tail.length - parsed;
    },
  };
}

// ---- inline ----------------------------------------------------------------------------
//
// One pass over a block's text records what can pair up (escapes, code spans, brackets, the
// places that can close emphasis) in tables, and the parse asks those tables instead of
// searching ahead. A text of openers that never close ("*a *a *a ...", "[[[[", "[a](") then
// costs time linear in its length, where a search to the end per opener would be quadratic.

const SAFE_URL = /^https?:\/\/[^\s<>]+$/i;
const URL_START = /^https?:\/\//i;
const ESCAPABLE = "\\`*_{}[]()#+-.!<>~|";
// Emphasis and links nested deeper than this stay literal text: no answer needs more, and it
// keeps both the parse's recursion and the DOM shallow.
const MAX_DEPTH = 16;
const isSpace = (c) => c === undefined || /\s/.test(c);
const isWord = (c) => c !== undefined && /[\p{L}\p{N}]/u.test(c);

/** Is `url` a link target the page may use (http or https, nothing else)? */
export function safeUrl(url) {
  return SAFE_URL.test(url.trim()) ? url.trim() : null;
}

/** The first entry of the sorted `list` greater than `x` (its index; list.length when none). */
function firstAfter(list, x) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The pairing tables of `text` (see the note above). Link tables are built on first use. */
function inlineTables(text) {
  const n = text.length;
  const escaped = new Uint8Array(n); // 1: escaped by the backslash before it
  const inCode = new Uint8Array(n); // 1: inside a code span (its backticks included)
  const codeEnd = new Int32Array(n); // at a code span's first backtick: the offset after it

  // Backtick runs by length: a code span closes at the next run of exactly its length.
  let runs = null;
  if (text.includes("`")) {
    runs = new Map();
    for (let i = 0; i < n; ) {
      if (text[i] !== "`") {
        i += 1;
        continue;
      }
      let j = i;
      while (j < n && text[j] === "`") j += 1;
      if (!runs.has(j - i)) runs.set(j - i, []);
      runs.get(j - i).push(i);
      i = j;
    }
  }
  for (let i = 0; i < n; ) {
    const c = text[i];
    if (c === "\\" && i + 1 < n && ESCAPABLE.includes(text[i + 1])) {
      escaped[i + 1] = 1;
      i += 2;
      continue;
    }
    if (c === "`") {
      let j = i;
      while (j < n && text[j] === "`") j += 1;
      const same = runs.get(j - i) || [];
      const k = firstAfter(same, j - 1);
      if (k < same.length) {
        const end = same[k] + (j - i);
        codeEnd[i] = end;
        inCode.fill(1, i, end);
        i = end;
      } else {
        i = j;
      }
      continue;
    }
    i += 1;
  }

  // Where emphasis can close, by delimiter: not escaped, not in code, not after a space; a
  // single delimiter not inside a longer run; `_` not before a letter (snake_case).
  const closers = { "*": [], "**": [], _: [], __: [] };
  for (let k = 1; k < n; k++) {
    const c = text[k];
    if ((c !== "*" && c !== "_") || escaped[k] || inCode[k]) continue;
    const before = text[k - 1];
    if (isSpace(before)) continue;
    if (before !== c && text[k + 1] !== c && !(c === "_" && isWord(text[k + 1]))) closers[c].push(k);
    if (text[k + 1] === c && text[k + 2] !== c && !(c === "_" && isWord(text[k + 2]))) closers[c + c].push(k);
  }

  let links = null;
  const linkTables = () => {
    if (links) return links;
    // The "]" that closes each "[" (brackets nest), the next ")", and where a URL word stops.
    const match = new Int32Array(n).fill(-1);
    const stack = [];
    for (let i = 0; i < n; i++) {
      if (escaped[i] || inCode[i]) continue;
      if (text[i] === "[") stack.push(i);
      else if (text[i] === "]" && stack.length) match[stack.pop()] = i;
    }
    const nextParen = new Int32Array(n + 1);
    const nextStop = new Int32Array(n + 1);
    const blankLines = new Int32Array(n + 1); // "\n\n" starts before each offset
    nextParen[n] = -1;
    nextStop[n] = n;
    for (let i = n - 1; i >= 0; i--) {
      const c = text[i];
      nextParen[i] = c === ")" ? i : nextParen[i + 1];
      nextStop[i] = c === ")" || c === "<" || c === ">" || isSpace(c) ? i : nextStop[i + 1];
    }
    for (let i = 0; i < n; i++) blankLines[i + 1] = blankLines[i] + (text[i] === "\n" && text[i + 1] === "\n" ? 1 : 0);
    links = { match, nextParen, nextStop, blankLines };
    return links;
  };

  return { text, escaped, inCode, codeEnd, closers, linkTables };
}

/** The offset of the delimiter that closes one opened just before `from`, within [.., end); or -1. */
function findCloser(t, from, end, c, len) {
  const list = t.closers[len === 2 ? c + c : c];
  const at = firstAfter(list, from);
  if (at < list.length && list[at] + len < end) return list[at];
  // A delimiter that ends the range closes whatever follows it (the range's own closer).
  const k = end - len;
  const { text } = t;
  if (k <= from || t.escaped[k] || t.inCode[k] || text[k] !== c || (len === 2 && text[k + 1] !== c)) return -1;
  const before = text[k - 1];
  return !isSpace(before) && !(len === 1 && before === c) ? k : -1;
}

/** [label](href) at `at`, ending before `end`, with an http(s) href; null when it is not one. */
function matchLink(t, at, end) {
  const { text } = t;
  const { match, nextParen, nextStop, blankLines } = t.linkTables();
  const j = match[at];
  if (j === -1 || j + 1 >= end || text[j + 1] !== "(") return null;
  if (blankLines[j] - blankLines[at] > 0) return null;
  const close = nextParen[j + 2];
  if (close === -1 || close >= end || t.inCode[close]) return null;
  // The target is the first word inside the parentheses, optionally in <...>.
  let p = j + 2;
  while (p < close && isSpace(text[p])) p += 1;
  if (text[p] === "<") p += 1;
  if (!URL_START.test(text.slice(p, p + 8))) return null;
  const q = nextStop[p];
  const wordEnd = text[q] === ">" ? q + 1 : q;
  if (wordEnd !== close && !isSpace(text[wordEnd])) return null;
  const href = safeUrl(text.slice(p, q));
  return href ? { labelEnd: j, href, end: close + 1 } : null;
}

function parseRange(t, start, end, depth) {
  const { text } = t;
  const out = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push({ type: "text", text: buf });
    buf = "";
  };
  let i = start;
  while (i < end) {
    const c = text[i];
    if (c === "\\" && i + 1 < end && ESCAPABLE.includes(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "\n") {
      flush();
      out.push({ type: "break" });
      i += 1;
      continue;
    }
    if (c === "`") {
      let n = 1;
      while (i + n < end && text[i + n] === "`") n += 1;
      const close = t.codeEnd[i];
      if (close && close <= end) {
        flush();
        let code = text.slice(i + n, close - n).replace(/\n/g, " ");
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        out.push({ type: "code", text: code });
        i = close;
        continue;
      }
      buf += "`".repeat(n);
      i += n;
      continue;
    }
    if ((c === "*" || c === "_") && depth < MAX_DEPTH) {
      const double = i + 1 < end && text[i + 1] === c;
      const len = double ? 2 : 1;
      const after = i + len < end ? text[i + len] : undefined;
      const before = i > start ? text[i - 1] : undefined;
      if (!isSpace(after) && !(c === "_" && isWord(before)) && after !== c) {
        const close = findCloser(t, i + len, end, c, len);
        if (close !== -1) {
          flush();
          out.push({ type: double ? "strong" : "em", children: parseRange(t, i + len, close, depth + 1) });
          i = close + len;
          continue;
        }
      }
      buf += double ? c + c : c;
      i += len;
      continue;
    }
    if (c === "[" && depth < MAX_DEPTH) {
      const link = matchLink(t, i, end);
      if (link) {
        flush();
        out.push({ type: "link", href: link.href, children: parseRange(t, i + 1, link.labelEnd, depth + 1) });
        i = link.end;
        continue;
      }
    }
    buf += c;
    i += 1;
  }
  flush();
  return out;
}

/**
 * Spans of one block's text: [{type: "text", text} | {type: "code", text} |
 * {type: "strong"|"em", children} | {type: "link", href, children} | {type: "break"}].
 * Delimiters that never close stay literal text (so a half-streamed "**bo" reads as typed).
 * An opener closes at the first place after it that can close it; code spans bind first
 * (`a*b` is no emphasis), and a backslash makes the next punctuation literal.
 */
export function parseInline(text) {
  return parseRange(inlineTables(text), 0, text.length, 0);
}

/** The text a reader sees, without markup (for tests and for the announcer). */
export function plainText(spans) {
  return spans
    .map((s) => (s.type === "text" || s.type === "code" ? s.text : s.type === "break" ? "\n" : plainText(s.children)))
    .join("");
}
