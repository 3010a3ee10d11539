// A toast: one short line at the bottom of the screen with an optional action ("Undo"), gone
// after some seconds. One at a time: a new one replaces the last (its action is then gone).

/** `els`: toast (the box, role="status"), toastText, toastAction (a button). */
export function createToast(els) {
  let timer = null;
  let action = null;

  function hide() {
    clearTimeout(timer);
    timer = null;
    action = null;
    els.toast.hidden = true;
    els.toastText.textContent = "";
  }

  els.toastAction.addEventListener("click", () => {
    const run = action;
    hide();
    if (run) run();
  });

  return {
    /** Show `text` for `ms`; with `label` and `onAction`, a button that runs it (once). */
    show(text, { label = "", onAction = null, ms = 10_000 } = {}) {
      hide();
      els.toastText.textContent = text;
      els.toastAction.textContent = label;
      els.toastAction.hidden = !label || !onAction;
      action = onAction;
      els.toast.hidden = false;
      timer = setTimeout(hide, ms);
    },
    hide,
    get visible() {
      return !els.toast.hidden;
    },
  };
}
