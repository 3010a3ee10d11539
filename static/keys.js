// Keyboard and input-device rules of the page, as pure functions (tests/js/keys.test.mjs):
// the composer's hint for the device in hand, and the page's shortcuts.

/** The media query of a touch screen without a mouse: no Esc key, no hover. */
export const TOUCH_QUERY = "(hover: none), (pointer: coarse)";

/**
 * The composer's hint. With a keyboard: how Enter, Shift+Enter and Esc work. On a touch
 * screen the keys it names do not exist (no Esc, no Shift+Enter on most on-screen
 * keyboards): no hint, the Send and Stop buttons say it.
 */
export function composerHint(touch) {
  return touch ? "" : "Enter sends · Shift+Enter new line · Esc stops";
}

/** A field where Ctrl+Z belongs to the text (its own undo), not to the scenario. */
export function isTextField(target) {
  if (!target || typeof target !== "object") return false;
  if (target.isContentEditable) return true;
  const tag = String(target.tagName || "").toUpperCase();
  if (tag === "TEXTAREA") return true;
  if (tag !== "INPUT") return false;
  const type = String(target.type || "text").toLowerCase();
  return !["button", "checkbox", "radio", "submit", "reset", "file", "image", "range", "color"].includes(type);
}

/**
 * A keydown -> "undo" | "redo" | null: Ctrl/Cmd+Z undoes the scenario, Shift+Ctrl/Cmd+Z (and
 * Ctrl+Y) redoes it, unless focus is in a text field (or a dialog is open).
 * `event`: {key, ctrlKey, metaKey, shiftKey, altKey, target}.
 */
export function shortcutAction(event, { dialogOpen = false } = {}) {
  if (!event || dialogOpen || event.altKey || !(event.ctrlKey || event.metaKey)) return null;
  if (isTextField(event.target)) return null;
  const key = String(event.key || "").toLowerCase();
  if (key === "z") return event.shiftKey ? "redo" : "undo";
  if (key === "y" && event.ctrlKey && !event.shiftKey) return "redo";
  return null;
}
