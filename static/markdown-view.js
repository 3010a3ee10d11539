// Markdown blocks (markdown.js) built as DOM nodes: createElement and text nodes only, never
// innerHTML, so model text can never become markup. Links get an http(s) href (markdown.js
// refuses anything else) and rel="noopener noreferrer".
//
// createMarkdownView(container) renders a growing text incrementally: blocks that are final are
// built once and left alone; only the live tail (usually the last block) is rebuilt per update.

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

function withInline(tag, text) {
  return buildInline(parseInline(text), document.createElement(tag));
}

function buildList(ordered, items, start) {
  const list = document.createElement(ordered ? "ol" : "ul");
  if (ordered && start !== null && start !== undefined && start !== 1) list.start = start;
  for (const item of items) {
    const li = withInline("li", item.text);
    if (item.children && item.children.length) li.appendChild(buildList(item.childOrdered, item.children, null));
    list.appendChild(li);
  }
  return list;
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
 * A view of a growing markdown text in `container`.
 *   append(piece) render the text so far plus `piece` (the per-token call)
 *   update(text)  render `text` (normally the previous text plus a token)
 *   caret(node)   keep `node` at the end of the text (null removes it)
 *   stats         {updates, commits, rebuilt}: counts, for measuring per-token work
 */
export function createMarkdownView(container) {
  let stream = createBlockStream();
  let liveNodes = [];
  let liveKey = "";
  let caretNode = null;
  const stats = { updates: 0, commits: 0, rebuilt: 0 };

  function placeCaret() {
    if (!caretNode) return;
    const last = liveNodes.length ? liveNodes[liveNodes.length - 1] : container.lastElementChild;
    const host = last && last !== caretNode ? caretHost(last) : container;
    if (caretNode.parentNode !== host || host.lastChild !== caretNode) host.appendChild(caretNode);
  }

  function render({ commit, live, reset }) {
    stats.updates += 1;
    if (reset) {
      container.replaceChildren();
      liveNodes = [];
      liveKey = "";
    }
    if (commit.length) {
      for (const n of liveNodes) n.remove();
      liveNodes = [];
      liveKey = "";
      for (const b of commit) container.appendChild(buildBlock(b));
      stats.commits += commit.length;
    }
    // Rebuild the tail only when it changed (a token inside a code block changes it; a
    // repeat of the same text does not).
    const key = JSON.stringify(live);
    if (key !== liveKey) {
      for (const n of liveNodes) n.remove();
      liveNodes = live.map(buildBlock);
      for (const n of liveNodes) container.appendChild(n);
      liveKey = key;
      stats.rebuilt += 1;
    }
    placeCaret();
  }

  return {
    append(piece) {
      render(stream.append(piece));
    },
    update(text) {
      render(stream.update(text));
    },
    /** Render `text` from scratch (for a finished answer shown differently from its stream). */
    replace(text) {
      stream = createBlockStream();
      container.replaceChildren();
      liveNodes = [];
      liveKey = "";
      this.update(text);
    },
    caret(node) {
      if (caretNode && caretNode !== node) caretNode.remove();
      caretNode = node;
      placeCaret();
    },
    stats,
  };
}
