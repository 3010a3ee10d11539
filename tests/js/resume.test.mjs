// Unit tests for static/resume.js (when and from where an answer is resumed). Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import {
  MAX_RECONNECTS,
  MAX_RETRY_DELAY_MS,
  RUN_KEY,
  clearRunRecord,
  lastEventId,
  loadRunRecord,
  reconnectDelay,
  resumePlan,
  saveRunRecord,
} from "../../static/resume.js";

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), m };
}

describe("reconnectDelay", () => {
  test("honours the server's retry hint, doubles it per try, caps it, and stops after the bound", () => {
    const delays = [];
    for (let i = 0; ; i++) {
      const d = reconnectDelay(i, 2000);
      if (d === null) break;
      delays.push(d);
    }
    assert.deepEqual(delays, [2000, 4000, 8000, 8000, 8000]);
    assert.equal(delays.length, MAX_RECONNECTS);
    assert.equal(MAX_RETRY_DELAY_MS, 8000);
  });

  test("a short hint (a test server's) is honoured as it is; no hint waits one second", () => {
    assert.deepEqual([0, 1, 2].map((i) => reconnectDelay(i, 50)), [50, 100, 200]);
    assert.equal(reconnectDelay(0, null), 1000);
    assert.equal(reconnectDelay(0, NaN), 1000);
    assert.equal(reconnectDelay(-1, 50), null);
    assert.equal(reconnectDelay(0, 50, 0), null, "a bound of 0: no tries");
  });

  test("a hint above the cap is still honoured for the first try", () => {
    assert.equal(reconnectDelay(0, 20000), 20000);
    assert.equal(reconnectDelay(1, 20000), 20000);
  });
});

describe("the tab's run record", () => {
  test("saved, read back, cleared only for its own run", () => {
    const s = memoryStorage();
    assert.equal(loadRunRecord(s), null);
    saveRunRecord(s, { runId: "r1", lastEventId: "r1-4", msgId: "m9" });
    assert.deepEqual(JSON.parse(s.m.get(RUN_KEY)), { runId: "r1", lastEventId: "r1-4", msgId: "m9" });
    assert.deepEqual(loadRunRecord(s), { runId: "r1", lastEventId: "r1-4", msgId: "m9" });
    clearRunRecord(s, "other");
    assert.ok(loadRunRecord(s), "another run's clear leaves it");
    clearRunRecord(s, "r1");
    assert.equal(loadRunRecord(s), null);
  });

  test("junk and missing storage are harmless", () => {
    const s = memoryStorage();
    s.setItem(RUN_KEY, "{not json");
    assert.equal(loadRunRecord(s), null);
    s.setItem(RUN_KEY, JSON.stringify({ runId: 3 }));
    assert.equal(loadRunRecord(s), null);
    assert.equal(loadRunRecord(null), null);
    saveRunRecord(null, { runId: "x" });
    clearRunRecord(null);
    const throwing = { getItem() { throw new Error("denied"); }, setItem() { throw new Error("full"); }, removeItem() { throw new Error("denied"); } };
    saveRunRecord(throwing, { runId: "x" });
    assert.throws(() => throwing.getItem(), /denied/);
  });

  test("lastEventId", () => {
    assert.equal(lastEventId("abc", 7), "abc-7");
    assert.equal(lastEventId("abc", 0), "abc-0");
  });
});

describe("resumePlan", () => {
  const record = { runId: "r1", lastEventId: "r1-9", msgId: "a2" };
  const msgs = (last) => [
    { id: "u1", role: "user", content: "hi", status: "complete" },
    { id: "a2", role: "assistant", content: "Hel", status: "stopped", run: { id: "r1", seq: 9 }, ...last },
  ];

  test("the last answer of the record's run, joined after the frame its text was saved with", () => {
    const plan = resumePlan(msgs(), record);
    assert.equal(plan.msg.id, "a2");
    assert.equal(plan.runId, "r1");
    assert.equal(plan.after, 9);
    assert.equal(plan.seq, 9);
  });

  test("a record behind the text: join from the record, the text's frames are skipped by seq", () => {
    const plan = resumePlan(msgs({ run: { id: "r1", seq: 12 } }), record);
    assert.equal(plan.after, 9);
    assert.equal(plan.seq, 12);
  });

  test("a record ahead of the text (text saved before the last frames): join from the text", () => {
    const plan = resumePlan(msgs({ run: { id: "r1", seq: 5 } }), record);
    assert.equal(plan.after, 5);
    assert.equal(plan.seq, 5);
  });

  test("nothing to resume", () => {
    assert.equal(resumePlan(msgs(), null), null);
    assert.equal(resumePlan([], record), null);
    assert.equal(resumePlan(msgs({ status: "complete" }), record), null, "finished");
    assert.equal(resumePlan(msgs({ status: "error" }), record), null, "failed");
    assert.equal(resumePlan(msgs({ run: { id: "r2", seq: 3 } }), record), null, "another run");
    assert.equal(resumePlan(msgs({ run: undefined }), record), null, "no run");
    assert.equal(resumePlan(msgs(), { ...record, msgId: "zz" }), null, "another message");
    assert.equal(resumePlan([...msgs(), { id: "u3", role: "user", content: "more", status: "complete" }], record), null, "not the last message");
    assert.equal(resumePlan(msgs({ status: "interrupted" }), record).after, 9, "an interrupted answer can be resumed");
  });
});
