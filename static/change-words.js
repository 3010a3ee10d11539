// Changes to a scenario in plain words: "renamed the title", "added role Journalist",
// "removed step 4". Pure: no DOM.
//
// A change is {op, path, text?} (the server's `changes` entries, or a JSON Patch operation):
// the server's `text`, when present, is used as it is; otherwise the words are built from the
// op, the path and the scenario before and after.

import { isPlainObject, parsePointer, pointer } from "./json-tools.js";

const SINGULAR = { roles: "role", steps: "step", objectives: "objective", materials: "material", tags: "tag", injects: "inject" };
const VERBS = { add: "added", remove: "removed", replace: "changed", move: "moved", copy: "copied", test: "checked" };

const singular = (key) => SINGULAR[key] || (key.endsWith("s") && key.length > 3 ? key.slice(0, -1) : key);
const humanKey = (key) => String(key).replace(/[_-]+/g, " ").trim();

function at(doc, parts) {
  let v = doc;
  for (const p of parts) {
    if (v === null || typeof v !== "object") return undefined;
    v = Array.isArray(v) ? v[Number(p)] : v[p];
  }
  return v;
}

/** A short name for a list item: its name/title, or a short string. */
function itemName(item) {
  if (typeof item === "string") return item.length > 60 ? `${item.slice(0, 57)}…` : item;
  if (isPlainObject(item)) {
    for (const f of ["name", "title", "role", "action"]) if (typeof item[f] === "string" && item[f].trim()) return item[f].trim();
  }
  return "";
}

const quote = (s) => (s ? ` “${s}”` : "");

/**
 * One change in words. `before` / `after`: the scenario before and after (either may be null);
 * `value`: the operation's value when it is a patch operation.
 */
export function describeChange(change, { before = null, after = null } = {}) {
  if (!change || typeof change !== "object") return "";
  if (typeof change.text === "string" && change.text.trim()) return change.text.trim();
  const parts = parsePointer(change.path) || [];
  const verb = VERBS[change.op] || String(change.op || "changed");
  if (parts.length === 0) return change.op === "replace" ? "replaced the whole scenario" : `${verb} the scenario`;
  const [top, index, field] = parts;
  const value = "value" in change ? change.value : undefined;

  if (parts.length === 1) {
    if (top === "title" && change.op === "replace") {
      const title = typeof value === "string" ? value : after && typeof after.title === "string" ? after.title : "";
      return `renamed the title${title ? ` to “${title}”` : ""}`;
    }
    if (change.op === "replace" && ["difficulty", "setting", "summary"].includes(top)) {
      const v = value !== undefined ? value : at(after, parts);
      return typeof v === "string" && v.length <= 40 ? `changed the ${humanKey(top)} to “${v}”` : `changed the ${humanKey(top)}`;
    }
    return `${verb} the ${humanKey(top)}`;
  }

  const list = at(change.op === "remove" ? before : after, [top]) ?? at(before, [top]);
  const isItem = index !== undefined && (/^\d+$/.test(index) || index === "-") && (Array.isArray(list) || list === undefined);
  if (!isItem) return `${verb} the ${parts.slice(1).map(humanKey).join(" ")} of the ${humanKey(top)}`;

  const n = index === "-" ? (Array.isArray(list) ? list.length : null) : Number(index) + 1;
  const itemDoc = index === "-" ? undefined : at(change.op === "remove" ? before : after, [top, index]);
  const noun = singular(top);
  if (parts.length === 2) {
    const name = itemName(value !== undefined ? value : itemDoc);
    if (change.op === "add") return `added ${noun}${name ? ` ${name}` : n ? ` ${n}` : ""}`;
    if (change.op === "remove") return `removed ${noun}${n ? ` ${n}` : ""}${quote(itemName(at(before, [top, index])))}`;
    return `${verb} ${noun}${n ? ` ${n}` : ""}${quote(name)}`;
  }
  const owner = itemName(at(after, [top, index]) ?? at(before, [top, index]));
  const what = parts.slice(2).map((p) => (/^\d+$/.test(p) ? `#${Number(p) + 1}` : humanKey(p))).join(" ");
  const subject = `${noun} ${n}${quote(owner)}`;
  if (change.op === "replace" && ["name", "title"].includes(field) && parts.length === 3) return `renamed ${subject}`;
  return `${verb} the ${what} of ${subject}`;
}

/** "renamed the title, added role Journalist" (at most `max`, then "and N more"). */
export function describeChanges(changes, context = {}, max = 6) {
  if (!Array.isArray(changes) || changes.length === 0) return "";
  const parts = changes.slice(0, max).map((c) => describeChange(c, context));
  if (changes.length > max) parts.push(`and ${changes.length - max} more`);
  return parts.join(", ");
}

/**
 * The changes with every "-" (the end of a list, as a JSON Patch `add` writes it) replaced by
 * the index the item landed at, so the view can find and highlight it. Changes are read in
 * order against `before`: two adds to "/roles/-" land at n and n + 1.
 */
export function resolveChangePaths(changes, before) {
  if (!Array.isArray(changes)) return [];
  const added = new Map(); // list pointer -> items added so far at its end
  return changes.map((c) => {
    const parts = c && typeof c.path === "string" ? parsePointer(c.path) : null;
    const dash = parts ? parts.indexOf("-") : -1;
    if (dash === -1) return c;
    const listPath = pointer(parts.slice(0, dash));
    const list = at(before, parts.slice(0, dash));
    const extra = added.get(listPath) || 0;
    const index = (Array.isArray(list) ? list.length : 0) + extra;
    if (c.op === "add" && dash === parts.length - 1) added.set(listPath, extra + 1);
    return { ...c, path: pointer([...parts.slice(0, dash), index, ...parts.slice(dash + 1)]) };
  });
}

// ---- two versions: edits of one another, or different scenarios ------------------------

/** Below this share of common values, two versions with different titles are different
 *  scenarios (a Create, a sample or an import replacing the one before), not edits. */
export const SHARED_FOR_AN_EDIT = 0.5;

/** Every scalar value of a document (strings trimmed, empty ones left out), as a multiset. */
function leafValues(doc, out = new Map()) {
  if (Array.isArray(doc)) for (const v of doc) leafValues(v, out);
  else if (isPlainObject(doc)) for (const v of Object.values(doc)) leafValues(v, out);
  else if (doc !== null && doc !== undefined) {
    const key = typeof doc === "string" ? `s:${doc.trim()}` : `${typeof doc}:${String(doc)}`;
    if (key !== "s:") out.set(key, (out.get(key) || 0) + 1);
  }
  return out;
}

/**
 * Are `a` and `b` edits of one another, or different scenarios? Different when their titles
 * differ and fewer than half of their values (every string and number, wherever it sits) are
 * shared, counted against the larger of the two. A rename keeps nearly every value; "make it
 * harder" keeps the title; a Create shares almost nothing. Returns {relation: "edit" |
 * "different", shared} (shared: 0..1).
 */
export function versionRelation(a, b) {
  if (!isPlainObject(a) || !isPlainObject(b)) return { relation: "different", shared: 0 };
  const va = leafValues(a);
  const vb = leafValues(b);
  let common = 0;
  let na = 0;
  let nb = 0;
  for (const n of va.values()) na += n;
  for (const n of vb.values()) nb += n;
  for (const [key, n] of va) common += Math.min(n, vb.get(key) || 0);
  const shared = Math.max(na, nb) === 0 ? 1 : common / Math.max(na, nb);
  const sameTitle = typeof a.title === "string" && typeof b.title === "string" && a.title.trim() === b.title.trim();
  return { relation: sameTitle || shared >= SHARED_FOR_AN_EDIT ? "edit" : "different", shared };
}

/** A title cut to `max` characters at a word boundary, with "…". */
export function shortTitle(title, max = 32) {
  const t = typeof title === "string" && title.trim() ? title.trim().replace(/\s+/g, " ") : "(untitled)";
  if (t.length <= max) return t;
  const cut = t.slice(0, max - 1);
  const space = cut.lastIndexOf(" ");
  return `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s,.:;–-]+$/, "")}…`;
}

/**
 * The one line the panel shows when Undo, Redo or a new version moves between two different
 * scenarios (nothing is highlighted then): "Back to “Code Dark: Ransomware…” (version 3), a
 * different scenario." `how`: "back" (Undo), "forward" (Redo) or "new".
 */
export function differentScenarioLine(how, scenario, versionNumber) {
  const title = shortTitle(scenario && scenario.title);
  const lead = how === "back" ? "Back to" : how === "forward" ? "Forward to" : "Now";
  return `${lead} “${title}” (version ${versionNumber}), a different scenario.`;
}
