// Unit tests for static/keys.js (hints for the input device, the page's shortcuts). Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { composerHint, isTextField, shortcutAction } from "../../static/keys.js";

describe("composerHint", () => {
  test("a keyboard gets Enter, Shift+Enter and Esc; a touch screen no key it does not have", () => {
    assert.match(composerHint(false), /Enter sends/);
    assert.match(composerHint(false), /Esc stops/);
    assert.doesNotMatch(composerHint(true), /Esc|Shift|Ctrl/);
  });
});

describe("shortcutAction", () => {
  const body = { tagName: "BODY" };
  const key = (k, mods = {}, target = body) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, target, ...mods });

  test("Ctrl/Cmd+Z undoes, Shift+Ctrl/Cmd+Z and Ctrl+Y redo", () => {
    assert.equal(shortcutAction(key("z", { ctrlKey: true })), "undo");
    assert.equal(shortcutAction(key("z", { metaKey: true })), "undo");
    assert.equal(shortcutAction(key("Z", { ctrlKey: true, shiftKey: true })), "redo");
    assert.equal(shortcutAction(key("Z", { metaKey: true, shiftKey: true })), "redo");
    assert.equal(shortcutAction(key("y", { ctrlKey: true })), "redo");
  });

  test("not in a text field, not without the modifier, not with Alt, not under a dialog", () => {
    for (const target of [{ tagName: "TEXTAREA" }, { tagName: "INPUT", type: "text" }, { tagName: "INPUT" }, { tagName: "DIV", isContentEditable: true }]) {
      assert.equal(shortcutAction(key("z", { ctrlKey: true }, target)), null, JSON.stringify(target));
    }
    assert.equal(shortcutAction(key("z", { ctrlKey: true }, { tagName: "BUTTON" })), "undo");
    assert.equal(shortcutAction(key("z", { ctrlKey: true }, { tagName: "SELECT" })), "undo");
    assert.equal(shortcutAction(key("z", { ctrlKey: true }, { tagName: "INPUT", type: "checkbox" })), "undo");
    assert.equal(shortcutAction(key("z")), null);
    assert.equal(shortcutAction(key("z", { ctrlKey: true, altKey: true })), null);
    assert.equal(shortcutAction(key("z", { ctrlKey: true }), { dialogOpen: true }), null);
    assert.equal(shortcutAction(key("x", { ctrlKey: true })), null);
    assert.equal(shortcutAction(null), null);
  });

  test("isTextField", () => {
    assert.equal(isTextField({ tagName: "textarea" }), true);
    assert.equal(isTextField({ tagName: "INPUT", type: "password" }), true);
    assert.equal(isTextField({ tagName: "INPUT", type: "submit" }), false);
    assert.equal(isTextField(null), false);
  });
});
