// Unit tests for the page's pure words: health.js (header, budget) and conversation.js
// (what a finished answer shows). Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { budgetSpentText, errorMessage, formatWait, healthTone, healthView, secondsUntil } from "../../static/health.js";
import { CUT_OFF_NOTE, displayText } from "../../static/conversation.js";

describe("health", () => {
  const now = Date.parse("2026-12-01T21:00:00Z");

  test("status labels", () => {
    assert.equal(healthView({ status: "ok" }, now).label, "Server ok");
    assert.match(healthView({ status: "degraded" }, now).label, /^Degraded/);
    // A server that stops says so; whether it comes back is not known to it.
    assert.equal(healthView({ status: "shutting_down" }, now).label, "The server is shutting down");
    assert.doesNotMatch(healthView({ status: "shutting_down" }, now).label, /restart/);
    assert.equal(healthView({ status: "weird" }, now).label, "Server status: weird");
    assert.equal(healthView(null, now).status, "unknown");
  });

  test("the model dot and the badge share one tone: never a green dot beside Degraded", () => {
    assert.equal(healthView({ status: "degraded", provider: "openai-compatible" }, now).tone, "bad");
    assert.equal(healthView({ status: "degraded", provider: "offline" }, now).tone, "bad");
    assert.equal(healthView({ status: "ok", provider: "openai-compatible" }, now).tone, "ok");
    assert.equal(healthView({ status: "ok", provider: "offline" }, now).tone, "offline");
    assert.equal(healthView({ status: "shutting_down", provider: "openai-compatible" }, now).tone, "warn");
    assert.equal(healthTone("down", null), "bad");
    assert.equal(healthTone("unknown", "openai-compatible"), "unknown");
  });

  test("the upstream's last failure is the detail", () => {
    const h = { status: "degraded", upstream: { last_success_at: null, last_failure_at: "2026-12-01T20:59:00Z", last_error_code: "upstream_timeout", consecutive_failures: 3 } };
    assert.equal(healthView(h, now).detail, "Last model failure: upstream_timeout at 2026-12-01T20:59:00Z (3 in a row)");
    assert.equal(healthView({ status: "ok", upstream: { last_error_code: null } }, now).detail, "");
  });

  test("a spent budget is said plainly; no budget or budget left says nothing", () => {
    const spent = healthView({ status: "ok", budget: { limit: 10, used: 10, remaining: 0, resets_at: "2026-12-02T00:00:00Z" } }, now);
    assert.equal(spent.budgetSpent, true);
    assert.equal(spent.budgetText, "Today's token budget for this server is spent: new requests are refused until it resets. It resets at midnight UTC, in 3 h.");
    assert.equal(healthView({ status: "ok", budget: { limit: 10, used: 3, remaining: 7 } }, now).budgetText, "");
    assert.equal(healthView({ status: "ok" }, now).budgetSpent, false);
  });

  test("a 429 budget_exhausted reads the same as the header", () => {
    assert.equal(errorMessage({ code: "budget_exhausted", message: "server words", retryAfter: 3 * 3600 }), budgetSpentText(3 * 3600));
    assert.equal(errorMessage({ code: "rate_limited", message: "slow down" }), "slow down");
    assert.equal(errorMessage(null), "Something went wrong.");
  });

  test("times", () => {
    assert.equal(formatWait(40), "40 s");
    assert.equal(formatWait(300), "5 min");
    assert.equal(formatWait(3 * 3600 + 12 * 60), "3 h 12 min");
    assert.equal(secondsUntil("2026-12-01T21:01:00Z", now), 60);
    assert.equal(secondsUntil(now / 1000 + 30, now), 30);
    assert.equal(secondsUntil(now + 5000, now), 5);
    assert.equal(secondsUntil("not a time", now), null);
    assert.equal(secondsUntil(undefined, now), null);
  });
});

describe("displayText", () => {
  test("trailing blank lines go", () => {
    assert.equal(displayText({ content: "Hello\n\n\n" }), "Hello");
  });

  test("after a scenario arrived, the block's lead-in paragraph gives way to the summary", () => {
    const content = "Done: 1 change.\n\n- Added the role \"Journalist\".\n\nHere is the updated scenario; everything else is as before:\n\n";
    assert.equal(displayText({ content, changeSummary: "added role Journalist" }), "Done: 1 change.\n\n- Added the role \"Journalist\".");
    assert.equal(displayText({ content }), content.trimEnd(), "without a scenario the text is as received");
    assert.equal(displayText({ content: "Only a lead-in:", changeSummary: "x" }), "Only a lead-in:");
  });

  test("the cut-off note names the setting", () => {
    assert.match(CUT_OFF_NOTE, /MAX_OUTPUT_TOKENS/);
  });
});
