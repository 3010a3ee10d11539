// Markdown blocks (markdown.js) built as DOM nodes: createElement and text nodes only, never
// innerHTML, so model text can never become markup. Links get an http(s) href (markdown.js
// refuses anything else) and rel="noopener noreferrer".
//
// createMarkdownView(container) renders a growing text incrementally: blocks that are final are
// built once and left alone; only the live tail (usually the last block) is rebuilt per update,
// and a long one only each time it has grown by a fraction of its length.

import { createBlockStream, parseInline } from "./markdown.js";

/** DOM nodes for inline spans. */
export function buildInline(spans, parent) {
  for (const s of spans) {
    switch (s.type) {
      case "text":
        parent.appendChild(document.createTextNode(s.text));
        break;
      case "break":
        parent.appendChild(document.createElement("br"));
        break;
      case "code": {
        const code = document.createElement("code");
        code.textContent = s.text;
        parent.appendChild(code);
        break;
      }
      case "strong":
      case "em": {
        const node = document.createElement(s.type);
        buildInline(s.children, node);
        parent.appendChild(node);
        break;
      }
      case "link": {
        const a = document.createElement("a");
        a.href = s.href;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        buildInline(s.children, a);
        parent.appendChild(a);
        break;
      }
      default:
        break;
    }
  }
  return parent;
}

// The spans each element was built from: an update of the live block changes only the spans
// (and list items) that differ, so a long block's DOM is not rebuilt for each re-parse.
const spansOf = new WeakMap();

function withInline(tag, text) {
  const spans = parseInline(text);
  const node = buildInline(spans, document.createElement(tag));
  spansOf.set(node, spans);
  return node;
}

function buildItem(item) {
  const li = withInline("li", item.text);
  if (item.children && item.children.length) li.appendChild(buildList(item.childOrdered, item.children, null));
  return li;
}

function buildList(ordered, items, start) {
  const list = document.createElement(ordered ? "ol" : "ul");
  if (ordered && start !== null && start !== undefined && start !== 1) list.start = start;
  for (const item of items) list.appendChild(buildItem(item));
  return list;
}

const same = (a, b) => a === b || JSON.stringify(a) === JSON.stringify(b);

/** Make `el`'s spans (its first children, one node per span) those of `text`. */
function patchInline(el, text) {
  const old = spansOf.get(el) || [];
  const spans = parseInline(text);
  let i = 0;
  while (i < old.length && i < spans.length && same(old[i], spans[i])) i += 1;
  const kids = el.childNodes;
  const after = kids[old.length] || null; // a nested list, or the caret
  for (let k = old.length - 1; k >= i; k--) el.removeChild(kids[k]);
  if (i < spans.length) el.insertBefore(buildInline(spans.slice(i), document.createDocumentFragment()), after);
  spansOf.set(el, spans);
}

/** Make the list `el` (built from `old` items) show `items`: the leading equal items are kept. */
function patchItems(el, old, items) {
  let i = 0;
  while (i < old.length && i < items.length && same(old[i], items[i])) i += 1;
  // The first differing item is usually the last one, growing: patched in place.
  if (i < old.length && i < items.length && el.children[i]) {
    patchItem(el.children[i], old[i], items[i]);
    i += 1;
  }
  while (el.children.length > i) el.removeChild(el.lastElementChild);
  for (let k = i; k < items.length; k++) el.appendChild(buildItem(items[k]));
}

function patchItem(li, old, item) {
  patchInline(li, item.text);
  const nested = li.lastElementChild && ["UL", "OL"].includes(li.lastElementChild.tagName) ? li.lastElementChild : null;
  const had = old.children && old.children.length;
  const has = item.children && item.children.length;
  if (had && has && old.childOrdered === item.childOrdered && nested) {
    patchItems(nested, old.children, item.children);
  } else {
    if (nested) nested.remove();
    if (has) li.insertBefore(buildList(item.childOrdered, item.children, null), null);
  }
}

/**
 * `node` (built from `old`) updated to show `block`: in place where the kind of block is the
 * same, else a new node. Returns the node that shows `block`.
 */
function patchBlock(node, old, block) {
  if (old.type !== block.type) return buildBlock(block);
  switch (block.type) {
    case "paragraph":
      patchInline(node, block.text);
      return node;
    case "heading":
      if (old.level !== block.level) return buildBlock(block);
      patchInline(node, block.text);
      return node;
    case "quote":
      patchInline(node.firstElementChild, block.text);
      return node;
    case "code": {
      if (old.lang !== block.lang) return buildBlock(block);
      const code = node.firstElementChild;
      let text = code.firstChild;
      if (!text || text.nodeType !== Node.TEXT_NODE) text = code.insertBefore(document.createTextNode(""), code.firstChild);
      if (block.text.startsWith(old.text)) text.appendData(block.text.slice(old.text.length));
      else text.data = block.text;
      return node;
    }
    case "list":
      if (old.ordered !== block.ordered || old.start !== block.start) return buildBlock(block);
      patchItems(node, old.items, block.items);
      return node;
    default:
      return same(old, block) ? node : buildBlock(block);
  }
}

/** One block as a DOM node. */
export function buildBlock(block) {
  let node;
  switch (block.type) {
    case "heading":
      // Inside a message: # is the biggest heading a message has, below the panel's h2.
      node = withInline(`h${Math.min(6, block.level + 2)}`, block.text);
      break;
    case "code": {
      node = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = block.text;
      if (block.lang) code.dataset.lang = block.lang;
      node.appendChild(code);
      break;
    }
    case "list":
      node = buildList(block.ordered, block.items, block.start);
      break;
    case "quote":
      node = document.createElement("blockquote");
      node.appendChild(withInline("p", block.text));
      break;
    case "hr":
      node = document.createElement("hr");
      break;
    default:
      node = withInline("p", block.text);
  }
  node.classList.add("md", `md-${block.type}`);
  return node;
}

/** Where a caret goes at the end of a block: inside its last line of text. */
function caretHost(node) {
  let host = node;
  for (;;) {
    if (host.tagName === "PRE") return host.lastChild || host;
    const last = host.lastElementChild;
    if (!last || !["LI", "UL", "OL", "P", "CODE"].includes(last.tagName)) return host.tagName === "HR" ? host.parentNode : host;
    host = last;
  }
}

/**
 * A view of a growing markdown text in `container` (`streamOptions`: createBlockStream's).
 *   append(piece) render the text so far plus `piece` (the per-token call)
 *   update(text)  render `text` (normally the previous text plus a token)
 *   replace(text) render `text` from scratch, completely
 *   flush()       render what a long open block has deferred (see below)
 *   caret(node)   keep `node` at the end of the text (null removes it, and flushes: the caret
 *                 leaves when the stream ends)
 *   stats         {updates, commits, rebuilt, deferred, flushes}: counts, for measuring
 *
 * A long open block is re-parsed only as it grows by a fraction of its length
 * (createBlockStream): in between, the text appended since shows as plain text at the block's
 * end, and a timer brings the block up to date within FLUSH_MS of the last deferral (later when
 * a re-parse costs more, so that catching up never takes more than 1% of the main thread).
 */
const FLUSH_MS = 250;

export function createMarkdownView(container, streamOptions = undefined) {
  let stream = createBlockStream(streamOptions);
  let liveNodes = [];
  let liveBlocks = []; // the blocks liveNodes show
  let liveKey = "";
  let pendingNode = null; // deferred text, shown as typed until the next re-parse
  let caretNode = null;
  let timer = null;
  let lastCost = 0;
  const stats = { updates: 0, commits: 0, rebuilt: 0, deferred: 0, flushes: 0 };

  function placeCaret() {
    if (!caretNode) return;
    const last = liveNodes.length ? liveNodes[liveNodes.length - 1] : container.lastElementChild;
    const host = last && last !== caretNode ? caretHost(last) : container;
    if (caretNode.parentNode !== host || host.lastChild !== caretNode) host.appendChild(caretNode);
  }

  function clearTimer() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function flush() {
    clearTimer();
    if (stream.pending) {
      stats.flushes += 1;
      render(stream.flush(), performance.now());
    }
  }

  function defer(text) {
    stats.deferred += 1;
    if (!pendingNode) {
      const last = liveNodes.length ? liveNodes[liveNodes.length - 1] : null;
      pendingNode = document.createTextNode("");
      (last ? caretHost(last) : container).appendChild(pendingNode);
    }
    pendingNode.appendData(text);
    if (timer === null) timer = setTimeout(flush, Math.max(FLUSH_MS, 100 * lastCost));
  }

  /** Render one step of the stream; `started`: when its parse began (to learn what one costs). */
  function render({ commit, live, deferred, reset }, started) {
    stats.updates += 1;
    if (live === null) {
      if (deferred) defer(deferred);
      placeCaret();
      return;
    }
    if (pendingNode) pendingNode.remove();
    pendingNode = null;
    if (reset) {
      container.replaceChildren();
      liveNodes = [];
      liveBlocks = [];
      liveKey = "";
    }
    if (commit.length) {
      // A committed block is usually the live one before it, finished: its node is kept.
      for (const b of commit) {
        if (liveNodes.length && same(liveBlocks[0], b)) {
          liveNodes.shift();
          liveBlocks.shift();
        } else {
          const node = liveNodes.length ? patchBlock(liveNodes[0], liveBlocks[0], b) : buildBlock(b);
          if (liveNodes.length) {
            if (node !== liveNodes[0]) liveNodes[0].replaceWith(node);
            liveNodes.shift();
            liveBlocks.shift();
          } else container.appendChild(node);
        }
      }
      stats.commits += commit.length;
      liveKey = "";
    }
    // Update the tail only when it changed (a token inside a code block changes it; a
    // repeat of the same text does not), and within it only what differs.
    const key = JSON.stringify(live);
    if (key !== liveKey) {
      const nodes = [];
      live.forEach((b, k) => {
        const node = k < liveNodes.length ? patchBlock(liveNodes[k], liveBlocks[k], b) : buildBlock(b);
        if (k < liveNodes.length && node !== liveNodes[k]) liveNodes[k].replaceWith(node);
        else if (k >= liveNodes.length) container.appendChild(node);
        nodes.push(node);
      });
      for (const n of liveNodes.slice(live.length)) n.remove();
      liveNodes = nodes;
      liveBlocks = live;
      liveKey = key;
      stats.rebuilt += 1;
    }
    placeCaret();
    lastCost = performance.now() - started;
  }

  return {
    append(piece) {
      const started = performance.now();
      render(stream.append(piece), started);
    },
    update(text) {
      const started = performance.now();
      render(stream.update(text), started);
    },
    replace(text) {
      clearTimer();
      stream = createBlockStream(streamOptions);
      container.replaceChildren();
      liveNodes = [];
      liveBlocks = [];
      liveKey = "";
      pendingNode = null;
      render(stream.update(text), performance.now());
    },
    flush,
    caret(node) {
      if (caretNode && caretNode !== node) caretNode.remove();
      caretNode = node;
      if (!node) flush();
      placeCaret();
    },
    stats,
  };
}
