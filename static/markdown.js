// Markdown as a model writes it, parsed into plain data (no DOM here):
//
//   parseBlocks(text)   -> [{type, from, ...}]   the blocks, each with the offset it starts at
//   parseInline(text)   -> [{type, ...}]         spans inside a paragraph, heading or list item
//   createBlockStream() -> {update(text)}        the same blocks for a growing text, telling
//                                                 which are final (`commit`) and which may still
//                                                 change (`live`)
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

const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
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

function itemOf(line) {
  const m = ITEM.exec(line);
  if (!m) return null;
  const ordered = /\d/.test(m[2][0]);
  return { indent: m[1].length, ordered, start: ordered ? parseInt(m[2], 10) : null, text: m[3] ?? "", markerWidth: m[1].length + m[2].length + 1 };
}

/** Would this line start a block other than a paragraph (so it ends a paragraph)? */
function startsBlock(line) {
  if (HEADING.test(line) || FENCE.test(line) || HR.test(line) || QUOTE.test(line)) return true;
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
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const body = [];
      let closed = false;
      i += 1;
      while (i < lines.length) {
        const l = lines[i].text;
        const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(l);
        i += 1;
        if (close && close[1][0] === marker[0] && close[1].length >= marker.length) {
          closed = true;
          break;
        }
        body.push(l);
      }
      blocks.push({ type: "code", from, lang: fence[2] || "", text: body.join("\n"), closed });
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      blocks.push({ type: "heading", from, level: heading[1].length, text: (heading[2] || "").trim() });
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
 * {commit, live, reset}:
 *   commit  blocks that are final: nothing appended later can change them (render them once);
 *   live    the blocks after them, re-parsed on every call (the growing last block, and a
 *           block whose first line is still partial);
 *   reset   true when the text did not extend the previous one: start over (render from scratch).
 * The committed blocks of all calls, then the last `live`, equal parseBlocks(text).
 * Offsets (`from`) are relative to the whole text.
 *
 * `append(piece)` is the per-token call: it touches only the uncommitted tail, never the whole
 * text (reading a long string that grew by `+=` makes the engine copy all of it, every token).
 * `update(text)` takes the whole text so far and appends what is new.
 */
export function createBlockStream() {
  let seenLength = 0;
  let base = 0; // where the first uncommitted block starts in the whole text
  let tail = ""; // the text from `base` on

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
    return { commit, live, reset };
  }

  return {
    append(piece) {
      tail += piece;
      seenLength += piece.length;
      return step(false);
    },
    update(text) {
      // An extension keeps the committed blocks: the uncommitted tail must still match.
      if (text.length >= seenLength && text.startsWith(tail, base)) {
        const piece = text.slice(seenLength);
        tail += piece;
        seenLength = text.length;
        return step(false);
      }
      base = 0;
      tail = text;
      seenLength = text.length;
      return step(true);
    },
  };
}

// ---- inline ----------------------------------------------------------------------------

const SAFE_URL = /^https?:\/\/[^\s<>]+$/i;
const ESCAPABLE = "\\`*_{}[]()#+-.!<>~|";
const isSpace = (c) => c === undefined || /\s/.test(c);
const isWord = (c) => c !== undefined && /[\p{L}\p{N}]/u.test(c);

/** Is `url` a link target the page may use (http or https, nothing else)? */
export function safeUrl(url) {
  return SAFE_URL.test(url.trim()) ? url.trim() : null;
}

/**
 * Spans of one block's text: [{type: "text", text} | {type: "code", text} |
 * {type: "strong"|"em", children} | {type: "link", href, children} | {type: "break"}].
 * Delimiters that never close stay literal text (so a half-streamed "**bo" reads as typed).
 */
export function parseInline(text) {
  const out = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push({ type: "text", text: buf });
    buf = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
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
      while (text[i + n] === "`") n += 1;
      const ticks = "`".repeat(n);
      let close = text.indexOf(ticks, i + n);
      while (close !== -1 && text[close + n] === "`") close = text.indexOf(ticks, close + n + 1);
      if (close !== -1) {
        flush();
        let code = text.slice(i + n, close).replace(/\n/g, " ");
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        out.push({ type: "code", text: code });
        i = close + n;
        continue;
      }
      buf += ticks;
      i += n;
      continue;
    }
    if (c === "*" || c === "_") {
      const double = text[i + 1] === c;
      const delim = double ? c + c : c;
      const after = text[i + delim.length];
      const before = text[i - 1];
      const canOpen = !isSpace(after) && !(c === "_" && isWord(before)) && after !== c;
      if (canOpen) {
        const close = findCloser(text, i + delim.length, delim);
        if (close !== -1) {
          flush();
          out.push({ type: double ? "strong" : "em", children: parseInline(text.slice(i + delim.length, close)) });
          i = close + delim.length;
          continue;
        }
      }
      buf += delim;
      i += delim.length;
      continue;
    }
    if (c === "[") {
      const link = matchLink(text, i);
      if (link) {
        flush();
        out.push({ type: "link", href: link.href, children: parseInline(link.label) });
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

/** The offset of the delimiter that closes one opened just before `from`, or -1. */
function findCloser(text, from, delim) {
  const c = delim[0];
  let j = from;
  while (j < text.length) {
    const k = text.indexOf(delim, j);
    if (k === -1) return -1;
    const before = text[k - 1];
    const after = text[k + delim.length];
    const runBefore = delim.length === 1 && before === c;
    const runAfter = after === c;
    // Skip code spans inside: `a*b` is not emphasis.
    const tick = text.indexOf("`", j);
    if (tick !== -1 && tick < k) {
      const end = text.indexOf("`", tick + 1);
      if (end !== -1 && end > k) {
        j = end + 1;
        continue;
      }
    }
    if (k > from && !isSpace(before) && !runBefore && !runAfter && !(c === "_" && isWord(after))) return k;
    j = k + 1;
  }
  return -1;
}

/** [label](href) at `at`, with an http(s) href; null when it is not such a link. */
function matchLink(text, at) {
  let depth = 0;
  let j = at;
  for (; j < text.length; j++) {
    const ch = text[j];
    if (ch === "\\") {
      j += 1;
      continue;
    }
    if (ch === "[") depth += 1;
    else if (ch === "]") {
      depth -= 1;
      if (depth === 0) break;
    } else if (ch === "\n" && text[j + 1] === "\n") return null;
  }
  if (j >= text.length || text[j + 1] !== "(") return null;
  const close = text.indexOf(")", j + 2);
  if (close === -1) return null;
  const target = text.slice(j + 2, close).trim().split(/\s+/)[0] || "";
  const href = safeUrl(target.replace(/^<|>$/g, ""));
  if (!href) return null;
  return { label: text.slice(at + 1, j), href, end: close + 1 };
}

/** The text a reader sees, without markup (for tests and for the announcer). */
export function plainText(spans) {
  return spans
    .map((s) => (s.type === "text" || s.type === "code" ? s.text : s.type === "break" ? "\n" : plainText(s.children)))
    .join("");
}
