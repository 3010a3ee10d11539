// Per-token cost of the markdown parser on a 2,000-token answer (not a test; run: node tests/js/markdown-bench.mjs).
// The Chromium figure (parse + DOM) comes from tests/browser/test_page_stream.py::test_markdown_per_token_cost_on_a_long_answer.
import { createBlockStream, parseInline } from "../../static/markdown.js";
const words = [];
for (let p = 0; p < 70; p++) {
  words.push(p % 5 === 0 ? `## Section ${p}\n\n` : '');
  for (let w = 0; w < 30; w++) words.push(w % 7 === 3 ? '**bold** ' : w % 11 === 5 ? '`code` ' : 'word ');
  words.push(p % 3 === 0 ? '\n- item one\n- item two\n\n' : '\n\n');
}
const tokens = words.filter(Boolean).slice(0, 2000);
const res = [];
for (let rep = 0; rep < 7; rep++) {
  const s = createBlockStream(); const t0 = performance.now();
  for (const t of tokens) { const { live } = s.append(t); for (const b of live) if (b.text) parseInline(b.text); JSON.stringify(live); }
  res.push((performance.now() - t0) / tokens.length * 1000);
}
res.sort((a,b)=>a-b);
console.log(`node ${process.version}: ${tokens.length} tokens, parse per token (blocks + inline + tail key): min ${res[0].toFixed(1)} µs, median ${res[3].toFixed(1)} µs`);
