// "Compare with buffered": the last streamed request sent again to the buffered endpoint, drawn
// as a second lane in the inspector, so waiting for the whole answer is visible next to streaming.

import { bufferedAgent } from "./api.js";

/**
 * `button`: the Compare button; `inspector`: inspector.js's API; `withAuth` from auth.js;
 * `announce(text)`; `lastBody()`: the last streamed request body or null; `busy()`: whether a
 * stream is running. Returns {refresh()} to re-enable the button when those change.
 */
export function createComparison({ button, inspector, withAuth, announce, lastBody, busy }) {
  let comparing = null;

  const refresh = () => {
    button.disabled = !lastBody() || busy() || Boolean(comparing);
  };

  async function compare() {
    const body = lastBody();
    if (!body || busy() || comparing) return;
    comparing = new AbortController();
    button.disabled = true;
    button.textContent = "Comparing…";
    inspector.beginBuffered();
    try {
      const r = await withAuth(() => bufferedAgent(body, { signal: comparing.signal, onChunk: ({ t }) => inspector.bufferedChunk(t) }));
      inspector.endBuffered({ tHeaders: r.tHeaders, tDone: r.tDone, requestId: r.requestId, ok: true });
      announce(`Buffered answer arrived after ${Math.round(r.tDone)} ms.`);
    } catch (err) {
      inspector.endBuffered({ ok: false, detail: err && err.code });
      announce(`The buffered request failed: ${err && err.message}`);
    } finally {
      comparing = null;
      button.textContent = "Compare with buffered";
      refresh();
    }
  }

  button.addEventListener("click", compare);
  return { refresh };
}
