// The streaming lab's figures (static/lab.js), without a browser.
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  DROP_EXPLANATION,
  EXPLANATIONS,
  LAB_MODES,
  ROWS,
  axis,
  cutFrame,
  describeResume,
  frameSeq,
  joinRequest,
  ms,
  resumeReport,
  rowUrl,
  sideOfCut,
  summarize,
  tickHeight,
} from "../../static/lab.js";

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

test("every row's explanation: one plain sentence first, then the files and functions", () => {
  assert.deepEqual(ROWS, ["real", ...LAB_MODES]);
  assert.deepEqual(LAB_MODES, ["blocking", "accumulate", "buffer-4k", "gzip"]);
  for (const mode of ROWS) {
    const { title, plain, code } = EXPLANATIONS[mode];
    assert.ok(title, mode);
    // For a learner: one sentence, no code, no file names; says what the user sees.
    assert.ok(!plain.includes("`") && !/\.py\b/.test(plain), `${mode}: ${plain}`);
    assert.equal(plain.match(/[.!?](\s|$)/g).length, 1, `${mode}: one sentence`);
    assert.match(plain, /\byou\b/, `${mode}: what the user feels`);
    assert.ok(plain.length < 200, mode);
    // For readers of the code: the files and functions.
    assert.ok(code.length > 200, mode);
    assert.match(code, /`[a-z_/]+\.py`/, mode);
    assert.equal(code.split("`").length % 2, 1, `${mode}: unbalanced backticks`);
  }
  for (const mode of LAB_MODES) assert.match(EXPLANATIONS[mode].code, /`web\/lab\.py`/, mode);
  assert.match(DROP_EXPLANATION, /Last-Event-ID/);
});

test("tickHeight: one fixed scale, so a tick never changes once drawn", () => {
  assert.equal(tickHeight(70), 18);
  assert.equal(tickHeight(16384), 100);
  assert.equal(tickHeight(1e9), 100);
  assert.ok(tickHeight(4096) > tickHeight(1024));
});

describe("dropping the connection", () => {
  const RUN = "0123456789abcdef0123456789abcdef";

  test("cutFrame: a whole number from 1, else no cut", () => {
    assert.equal(cutFrame("40"), 40);
    assert.equal(cutFrame(" 7 "), 7);
    for (const bad of ["", "0", "-3", "2.5", "1e3", "abc", null, undefined, "1234567"]) assert.equal(cutFrame(bad), null, String(bad));
  });

  test("frames before, at and after the cut, by their ids", () => {
    assert.equal(frameSeq(`${RUN}-12`), 12);
    assert.equal(frameSeq("scripted"), null);
    const ids = Array.from({ length: 6 }, (_, i) => `${RUN}-${i + 1}`);
    assert.deepEqual(
      ids.map((id, i) => sideOfCut(id, i + 1, 3)),
      ["before", "before", "cut", "after", "after", "after"],
    );
    // Without numbered ids the position on the connection counts.
    assert.deepEqual(["", "", "", ""].map((id, i) => sideOfCut(id, i + 1, 2)), ["before", "cut", "after", "after"]);
    // A replayed id (a join's frames start after the cut) is after it, whatever its position.
    assert.equal(sideOfCut(`${RUN}-41`, 1, 40), "after");
  });

  test("joinRequest: the run from Content-Location, Last-Event-ID from the last frame kept", () => {
    const location = `/api/agent/scenario/runs/${RUN}/stream`;
    assert.deepEqual(joinRequest(location, `${RUN}-40`), { url: location, runId: RUN, lastEventId: `${RUN}-40`, after: 40 });
    // Without the header, the id names the run.
    assert.deepEqual(joinRequest(null, `${RUN}-2`), { url: location, runId: RUN, lastEventId: `${RUN}-2`, after: 2 });
    // No id, or an id of another run: no join.
    assert.equal(joinRequest(location, ""), null);
    assert.equal(joinRequest(location, "ffff-3"), null);
    assert.equal(joinRequest(null, "scripted"), null);
  });

  test("resumeReport: what the join brought, checked against the cut", () => {
    const seqs = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    const ok = resumeReport(seqs(1, 40), seqs(41, 120), 40);
    assert.deepEqual(ok, { cut: 40, kept: 40, resumed: 80, firstResumed: 41, lastResumed: 120, missing: [], repeated: [], inOrder: true, complete: true });
    const gap = resumeReport(seqs(1, 40), [43, 44], 40);
    assert.deepEqual(gap.missing, [41, 42]);
    assert.equal(gap.complete, false);
    const twice = resumeReport(seqs(1, 40), [40, 41, 41, 42], 40);
    assert.deepEqual(twice.repeated, [40, 41]);
    assert.equal(twice.complete, false);
    assert.equal(resumeReport(seqs(1, 3), [5, 4], 3).inOrder, false);
    // A run that had finished before the cut: nothing more to send.
    assert.equal(resumeReport(seqs(1, 5), [], 5).complete, true);
  });

  test("describeResume: one line for a learner", () => {
    const report = resumeReport([1, 2, 3], [4, 5, 6, 7], 3);
    assert.equal(describeResume(report, 1000.4), "Dropped after frame 3; rejoined 1000 ms later with Last-Event-ID: 4 frames resumed (frames 4–7), none missing, none twice.");
    assert.match(describeResume(resumeReport([1, 2, 3], [5], 3), 10), /1 frame resumed \(frames 5–5\), 1 frame missing\./);
    assert.match(describeResume(report, 10, "cancelled"), /stopped while nobody read it/);
    assert.match(describeResume(resumeReport([1], [], 1), 10), /nothing more to send/);
  });
});

test("ms", () => {
  assert.equal(ms(null), "–");
  assert.equal(ms(12.6), "13 ms");
});
