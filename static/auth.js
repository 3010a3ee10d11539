// The access token: asked once in a small dialog when the server answers 401 `unauthorized`,
// kept in sessionStorage by api.js (never localStorage), sent on every /api/ request.

import { ApiError, getToken, setToken } from "./api.js";

/**
 * `els`: tokenDialog, tokenForm, tokenInput, tokenError, tokenCancel. Returns {withAuth}:
 * withAuth(call) runs an API call and, on 401 `unauthorized`, asks for the token and tries again
 * (a refused token is asked for again, with a note; Cancel gives a retryable error).
 */
export function createAuth(els) {
  let tokenRequest = null;

  function askForToken(rejected) {
    if (tokenRequest) return tokenRequest;
    tokenRequest = new Promise((resolve) => {
      els.tokenError.hidden = !rejected;
      els.tokenError.textContent = rejected ? "That token was not accepted. Check it and try again." : "";
      els.tokenInput.value = "";
      const done = (ok) => {
        els.tokenForm.removeEventListener("submit", onSubmit);
        els.tokenCancel.removeEventListener("click", onCancel);
        els.tokenDialog.removeEventListener("cancel", onCancel);
        if (els.tokenDialog.open) els.tokenDialog.close();
        tokenRequest = null;
        resolve(ok);
      };
      const onSubmit = (e) => {
        e.preventDefault();
        const token = els.tokenInput.value.trim();
        if (!token) {
          els.tokenError.hidden = false;
          els.tokenError.textContent = "Enter the access token.";
          els.tokenInput.focus();
          return;
        }
        setToken(token);
        done(true);
      };
      const onCancel = (e) => {
        e.preventDefault();
        done(false);
      };
      els.tokenForm.addEventListener("submit", onSubmit);
      els.tokenCancel.addEventListener("click", onCancel);
      els.tokenDialog.addEventListener("cancel", onCancel);
      els.tokenDialog.showModal();
      els.tokenInput.focus();
    });
    return tokenRequest;
  }

  async function withAuth(call) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401 || err.code !== "unauthorized" || attempt >= 5) throw err;
        const hadToken = Boolean(getToken());
        if (hadToken) setToken(null);
        const ok = await askForToken(hadToken);
        if (!ok) {
          throw new ApiError({
            code: "unauthorized",
            status: 401,
            message: "This server needs an access token. Retry to enter it.",
            retryable: true,
          });
        }
      }
    }
  }

  return { withAuth, get dialogOpen() {
    return els.tokenDialog.open;
  } };
}
