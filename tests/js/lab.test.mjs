// The streaming lab's figures (static/lab.js), without a browser.
import { test } from "node:test";
import assert from "node:assert/strict";

import { EXPLANATIONS, LAB_MODES, ROWS, axis, ms, rowUrl, summarize } from "../../static/lab.js";

test("summarize counts reads and bytes, and finds the largest gap from the request's start", () => {
  const s = summarize([
    { t: 40, bytes: 138 },
    { t: 60, bytes: 70 },
    { t: 2200, bytes: 29000 },
  ]);
  assert.deepEqual(s, { reads: 3, bytes: 29208, largestGap: 2140, gapEndsAt: 2200 });
  // A blocking response: the whole wait before its one read is the gap.
  assert.deepEqual(summarize([{ t: 3000, bytes: 33000 }]), { reads: 1, bytes: 33000, largestGap: 3000, gapEndsAt: 3000 });
  assert.deepEqual(summarize([]), { reads: 0, bytes: 0, largestGap: 0, gapEndsAt: 0 });
});

test("rowUrl: the real stream has no query; each lab mode is one encoded parameter", () => {
  assert.equal(rowUrl("real"), "/api/agent/scenario/stream");
  assert.equal(rowUrl("buffer-4k"), "/api/agent/scenario/stream?lab=buffer-4k");
});

test("axis rounds up to at most 8 whole steps", () => {
  assert.deepEqual(axis(6115), { span: 7000, step: 1000 });
  assert.deepEqual(axis(420), { span: 500, step: 100 });
  assert.deepEqual(axis(1), { span: 100, step: 100 });
  assert.deepEqual(axis(6115, 3), { span: 7500, step: 2500 }); // a narrow track: fewer labels
  for (const t of [1, 99, 101, 999, 2500, 7999, 8001, 59000, 400000]) {
    const { span, step } = axis(t);
    assert.ok(span >= t && span / step <= 8 || step === 60000, `${t}: ${span}/${step}`);
  }
});

test("every row has an explanation naming a file and a function", () => {
  assert.deepEqual(ROWS, ["real", ...LAB_MODES]);
  assert.deepEqual(LAB_MODES, ["blocking", "accumulate", "buffer-4k", "gzip"]);
  for (const mode of ROWS) {
    const { title, text } = EXPLANATIONS[mode];
    assert.ok(title && text.length > 200, mode);
    assert.match(text, /`[a-z_/]+\.py`/, mode);
    assert.equal(text.split("`").length % 2, 1, `${mode}: unbalanced backticks`);
  }
  for (const mode of LAB_MODES) assert.match(EXPLANATIONS[mode].text, /`web\/lab\.py`/, mode);
});

test("ms", () => {
  assert.equal(ms(null), "–");
  assert.equal(ms(12.6), "13 ms");
});
