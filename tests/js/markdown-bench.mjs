// Cost of the markdown parser while streaming (not a test; run: node tests/js/markdown-bench.mjs).
//   1. per token, on a 2,000-token answer of ordinary markdown;
//   2. in all, for 16k characters of text made to defeat a naive parser, in 8-character tokens.
// The Chromium figures (parse + DOM) come from
// tests/browser/test_page_stream.py::test_markdown_per_token_cost_on_a_long_answer and
// tests/browser/test_page_bounds.py::test_adversarial_markdown_streams_in_linear_time.
import { createBlockStream, parseInline } from "../../static/markdown.js";

/** Stream `tokens` the way the page does: each re-parse's live blocks through parseInline. */
function stream(tokens) {
  const s = createBlockStream();
  const take = ({ commit, live }) => {
    for (const b of [...commit, ...(live || [])]) {
      if (b.text !== undefined) parseInline(b.text);
      for (const item of b.items || []) parseInline(item.text);
    }
    if (live) JSON.stringify(live);
  };
  for (const t of tokens) take(s.append(t));
  take(s.flush());
}

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const words = [];
for (let p = 0; p < 70; p++) {
  words.push(p % 5 === 0 ? `## Section ${p}\n\n` : "");
  for (let w = 0; w < 30; w++) words.push(w % 7 === 3 ? "**bold** " : w % 11 === 5 ? "`code` " : "word ");
  words.push(p % 3 === 0 ? "\n- item one\n- item two\n\n" : "\n\n");
}
const tokens = words.filter(Boolean).slice(0, 2000);
const res = [];
for (let rep = 0; rep < 7; rep++) {
  const t0 = performance.now();
  stream(tokens);
  res.push(((performance.now() - t0) / tokens.length) * 1000);
}
res.sort((a, b) => a - b);
console.log(`node ${process.version}: ${tokens.length} tokens, parse per token (blocks + inline + tail key): min ${res[0].toFixed(1)} µs, median ${res[3].toFixed(1)} µs`);

const ADVERSARIAL = ["*a ", "_a ", "**a ", "*a* ", "` `` ``` ", "[a](", "[[", "- a\n  - b\n  continued *c\n", "> > a *b\n", "# a \t", "```a`", "a *b\nc _d\n"];
const figures = [];
for (const pattern of ADVERSARIAL) {
  const text = pattern.repeat(Math.ceil(16000 / pattern.length)).slice(0, 16000);
  const pieces = [];
  for (let at = 0; at < text.length; at += 8) pieces.push(text.slice(at, at + 8));
  const times = [];
  for (let rep = 0; rep < 5; rep++) {
    const t0 = performance.now();
    stream(pieces);
    times.push(performance.now() - t0);
  }
  figures.push(`${JSON.stringify(pattern)} ${median(times).toFixed(0)} ms`);
}
console.log(`16k characters in 8-character tokens, whole stream (median of 5; bar 500 ms):\n  ${figures.join("\n  ")}`);
