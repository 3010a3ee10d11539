// The header: which model answers, the server's health (ok / degraded / shutting_down) and,
// when the server has a daily token budget and it is used up, a plain sentence saying so.
//
// The model dot and the status badge take one tone (healthTone) from the same state, so they
// never disagree. healthView(), healthTone() and budgetSpentText() are pure (tested under
// node); createHealth() does the DOM.

import { ApiError, getHealth } from "./api.js";

const STATUS_LABELS = {
  ok: "Server ok",
  degraded: "Degraded: recent requests to the model failed",
  // The server knows it is stopping, not whether it will be back: it may be a restart or not.
  shutting_down: "The server is shutting down",
};

/**
 * One tone for the model dot and the status badge, so they never disagree (no green dot beside
 * a red "Degraded"): ok (a real model, green), offline (the built-in model, amber), warn
 * (shutting down), bad (degraded, or not reachable), unknown (not known yet).
 */
export function healthTone(status, provider) {
  if (status === "ok") return provider === "offline" ? "offline" : "ok";
  if (status === "degraded" || status === "down") return "bad";
  if (status === "shutting_down") return "warn";
  return "unknown";
}

/** "3 h 12 min", "5 min", "40 s". */
export function formatWait(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ""}`;
}

/** Seconds from `nowMs` until `resetsAt` (an ISO time, or Unix seconds / ms), or null. */
export function secondsUntil(resetsAt, nowMs) {
  let at = null;
  if (typeof resetsAt === "number" && Number.isFinite(resetsAt)) at = resetsAt < 1e12 ? resetsAt * 1000 : resetsAt;
  else if (typeof resetsAt === "string") {
    const parsed = Date.parse(resetsAt);
    if (!Number.isNaN(parsed)) at = parsed;
  }
  return at === null ? null : Math.max(0, (at - nowMs) / 1000);
}

/** The one sentence for a spent budget (the header and a 429 budget_exhausted error both use it). */
export function budgetSpentText(secondsLeft) {
  const when = typeof secondsLeft === "number" && secondsLeft > 0 ? ` It resets at midnight UTC, in ${formatWait(secondsLeft)}.` : " It resets at midnight UTC.";
  return `Today's token budget for this server is spent: new requests are refused until it resets.${when}`;
}

/**
 * What the header shows for a health body: {status, tone, label, detail, budgetSpent, budgetText}.
 * `budget` is optional ({limit, used, remaining, resets_at}); absent means no budget is set.
 */
export function healthView(health, nowMs = Date.now()) {
  const status = typeof health?.status === "string" ? health.status : "unknown";
  const label = STATUS_LABELS[status] || `Server status: ${status}`;
  const b = health && health.budget && typeof health.budget === "object" ? health.budget : null;
  const budgetSpent = Boolean(b && typeof b.remaining === "number" && b.remaining <= 0);
  // The upstream's state from real traffic (the server never calls the model to check it).
  const u = health && health.upstream && typeof health.upstream === "object" ? health.upstream : null;
  let detail = "";
  if (u && typeof u.last_error_code === "string" && u.last_error_code) {
    const n = typeof u.consecutive_failures === "number" ? u.consecutive_failures : 0;
    detail = `Last model failure: ${u.last_error_code}${typeof u.last_failure_at === "string" ? ` at ${u.last_failure_at}` : ""}${n ? ` (${n} in a row)` : ""}`;
  }
  return {
    status,
    tone: healthTone(status, typeof health?.provider === "string" ? health.provider : null),
    label,
    detail,
    budgetSpent,
    budgetText: budgetSpent ? budgetSpentText(secondsUntil(b.resets_at, nowMs)) : "",
  };
}

/** An error's message as the page shows it: a spent budget reads like the header says it. */
export function errorMessage(error) {
  if (error && error.code === "budget_exhausted") return budgetSpentText(error.retryAfter);
  return (error && error.message) || "Something went wrong.";
}

const REFRESH_MS = 30_000;

/**
 * `els`: modelStatus, modelName, offlineNote, healthStatus, budgetNote. `withAuth` from auth.js.
 * Returns {showModel, refresh, budgetExhausted(error)}.
 */
export function createHealth(els, { withAuth }) {
  let timer = null;

  let status = "unknown";
  let provider = null;

  /** The dot and the badge take their one tone from here. */
  function showTone() {
    const tone = healthTone(status, provider);
    els.modelStatus.dataset.tone = tone;
    els.healthStatus.dataset.tone = tone;
  }

  function showModel(model, newProvider) {
    provider = newProvider || null;
    els.modelStatus.dataset.provider = newProvider || "unknown";
    showTone();
    if (provider === "offline") {
      els.modelName.textContent = `${model || "offline model"} · built-in offline model`;
      els.offlineNote.hidden = false;
    } else if (provider) {
      els.modelName.textContent = `${model} · ${provider}`;
      els.offlineNote.hidden = true;
    } else {
      els.modelName.textContent = model;
      els.offlineNote.hidden = true;
    }
  }

  function showStatus(newStatus, label, detail = "") {
    status = newStatus;
    els.healthStatus.dataset.status = newStatus;
    showTone();
    els.healthStatus.textContent = label;
    els.healthStatus.title = detail;
    els.healthStatus.hidden = !label;
  }

  function showBudget(text) {
    els.budgetNote.textContent = text;
    els.budgetNote.hidden = !text;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const h = await withAuth(() => getHealth());
      showModel(h.model, h.provider);
      const view = healthView(h);
      showStatus(view.status, view.label, view.detail);
      showBudget(view.budgetText);
    } catch (err) {
      els.modelStatus.dataset.provider = "down";
      provider = null;
      const needsToken = err instanceof ApiError && err.code === "unauthorized";
      els.modelName.textContent = needsToken ? "Access token needed" : "Server not reachable";
      showStatus(needsToken ? "unknown" : "down", needsToken ? "" : "Not reachable");
    }
    timer = setTimeout(() => {
      if (document.visibilityState !== "hidden") refresh();
      else timer = setTimeout(refresh, REFRESH_MS);
    }, REFRESH_MS);
  }

  return {
    showModel,
    refresh,
    /** A 429 budget_exhausted answer: the header says so at once (health confirms later). */
    budgetExhausted(error) {
      showBudget(budgetSpentText(error.retryAfter));
    },
  };
}
