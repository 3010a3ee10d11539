// JSON Patch (RFC 6902) applied to a copy, for the page's live preview of a modify: the server
// applies the same operations to its working copy and sends each as a `scenario_patch` frame.
// Pure: no DOM. The document passed in is never changed; the result shares the untouched parts.
//
// Bounded like the server's working copy: an operation that would take the document past
// `maxBytes` (UTF-8 bytes of its JSON.stringify text; the server's MAX_SCENARIO_BYTES by default)
// is refused before it is applied. Without the bound, `copy` from a list into the same list
// doubles the document, and a patch block of a few hundred bytes grows it past any memory.
//
// Documents are treated as immutable (as everywhere in the reducer), which is what makes the
// work per operation small: a copied value is shared, not cloned, and each container's size is
// measured once and remembered. An operation costs about the widths of the containers along its
// path plus the size of the value it carries, never the size of the whole document.

import { MAX_SCENARIO_BYTES, isPlainObject, parsePointer, pointer } from "./json-tools.js";

export { MAX_SCENARIO_BYTES };

export class PatchError extends Error {
  constructor(message) {
    super(message);
    this.name = "PatchError";
  }
}

const clone = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

function isIndex(token) {
  return /^(0|[1-9]\d*)$/.test(token);
}

// ---- sizes -------------------------------------------------------------------------------

const containerBytes = new WeakMap();
const stringBytes = new Map(); // long strings only: a copied string is measured once
const STRING_CACHE_MIN = 256;
const STRING_CACHE_MAX = 4096;

/** UTF-8 bytes of a string of JSON text (UTF-16 in, surrogate pairs count 4). */
function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // the pair: 2 code units, 4 bytes
      i += 1;
    } else n += 2;
  }
  return n;
}

function stringSize(s) {
  if (s.length < STRING_CACHE_MIN) return utf8Length(JSON.stringify(s));
  let n = stringBytes.get(s);
  if (n === undefined) {
    if (stringBytes.size >= STRING_CACHE_MAX) stringBytes.clear();
    n = utf8Length(JSON.stringify(s));
    stringBytes.set(s, n);
  }
  return n;
}

/**
 * UTF-8 bytes of JSON.stringify(value), for a document that is not changed afterwards (the size
 * of each object and list is remembered). undefined: 0 (it is left out, as by JSON.stringify).
 */
export function jsonBytes(value) {
  if (value === null) return 4;
  switch (typeof value) {
    case "string":
      return stringSize(value);
    case "number":
      return JSON.stringify(value).length;
    case "boolean":
      return value ? 4 : 5;
    case "object": {
      let n = containerBytes.get(value);
      if (n !== undefined) return n;
      n = 2;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const v = value[i];
          n += (i ? 1 : 0) + (v === undefined || typeof v === "function" ? 4 : jsonBytes(v));
        }
      } else {
        let first = true;
        for (const key of Object.keys(value)) {
          const v = value[key];
          if (v === undefined || typeof v === "function") continue;
          n += (first ? 0 : 1) + stringSize(key) + 1 + jsonBytes(v);
          first = false;
        }
      }
      containerBytes.set(value, n);
      return n;
    }
    default:
      return 0;
  }
}

/** Are a and b the same JSON value (object members in any order)? Stops at the first difference. */
function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (jsonBytes(a) !== jsonBytes(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson(a[k], b[k]));
}

// ---- operations --------------------------------------------------------------------------

function get(doc, parts) {
  let at = doc;
  for (const p of parts) {
    if (Array.isArray(at)) {
      if (!isIndex(p) || Number(p) >= at.length) throw new PatchError(`no element ${p} at ${pointer(parts)}`);
      at = at[Number(p)];
    } else if (isPlainObject(at)) {
      if (!Object.prototype.hasOwnProperty.call(at, p)) throw new PatchError(`no member "${p}" at ${pointer(parts)}`);
      at = at[p];
    } else {
      throw new PatchError(`${pointer(parts)} does not exist`);
    }
  }
  return at;
}

/**
 * The document with the container at `parts` minus its last token (the parent) replaced by
 * `edit(parent)`, and its ancestors copied: [newRoot, [[copy, original], ...]].
 */
function copyPath(doc, parts, edit) {
  const originals = [doc];
  let at = doc;
  for (const p of parts.slice(0, -1)) {
    const next = Array.isArray(at) ? at[Number(p)] : at[p];
    if (next === undefined || (typeof next !== "object") || next === null) throw new PatchError(`${pointer(parts)}: the parent does not exist`);
    originals.push(next);
    at = next;
  }
  let child = edit(at);
  const copies = [[child, at]];
  for (let k = originals.length - 2; k >= 0; k--) {
    const original = originals[k];
    const key = parts[k];
    let copy;
    if (Array.isArray(original)) {
      copy = original.slice();
      copy[Number(key)] = child;
    } else {
      copy = { ...original, [key]: child };
    }
    copies.push([copy, original]);
    child = copy;
  }
  return [child, copies];
}

// A changed copy of a list in one step (toSpliced where the engine has it): slice() then splice()
// is many times slower in V8, and this is the cost of each op on a long list.
const inserted = (list, index, value) => (list.toSpliced ? list.toSpliced(index, 0, value) : list.slice(0, index).concat([value], list.slice(index)));
const removed = (list, index) => (list.toSpliced ? list.toSpliced(index, 1) : list.slice(0, index).concat(list.slice(index + 1)));
const withMember = (object, key, value) => ({ ...object, [key]: value });
function withoutMember(object, key) {
  const copy = { ...object };
  delete copy[key];
  return copy;
}

/**
 * Remember the copies' sizes once changed: each is its original's size plus `delta` (a
 * container's JSON text holds its child's), so no copy is ever measured member by member.
 */
function settle(copies, delta) {
  for (const [copy, original] of copies) containerBytes.set(copy, jsonBytes(original) + delta);
}

const has = (object, key) => Object.prototype.hasOwnProperty.call(object, key) && object[key] !== undefined;

/** Does `object` have more than `n` members? Stops counting there (Object.keys would list all). */
function membersOver(object, n) {
  let count = 0;
  for (const key in object) {
    if (Object.prototype.hasOwnProperty.call(object, key) && ++count > n) return true;
  }
  return false;
}

/** Bytes that adding a value of `valueBytes` under `last` of `parent` adds (a member replaced, or one more). */
function addDelta(parent, last, valueBytes) {
  if (Array.isArray(parent)) return valueBytes + (parent.length ? 1 : 0);
  if (has(parent, last)) return valueBytes - jsonBytes(parent[last]);
  return (membersOver(parent, 0) ? 1 : 0) + stringSize(last) + 1 + valueBytes;
}

/** Bytes that removing `last` from `parent` takes away (as a negative number). */
function removeDelta(parent, last) {
  if (Array.isArray(parent)) return -(jsonBytes(parent[Number(last)]) + (parent.length > 1 ? 1 : 0));
  return -(jsonBytes(parent[last]) + stringSize(last) + 1 + (membersOver(parent, 1) ? 1 : 0));
}

/** Refuse an operation that grows the document (by `delta`) to `after` bytes, over the limit. */
function checkSize(op, after, delta, maxBytes) {
  if (delta > 0 && after > maxBytes) {
    throw new PatchError(`this ${op.op} would make the scenario ${after} bytes, over the limit of ${Math.floor(maxBytes / 1024)} KiB (${maxBytes} bytes)`);
  }
}

/**
 * Add `value` (owned: never changed later) at `parts`, refused when the document would pass
 * `maxBytes` (checked before anything is copied).
 */
function add(doc, parts, value, op, maxBytes) {
  const valueBytes = jsonBytes(value);
  if (parts.length === 0) {
    checkSize(op, valueBytes, valueBytes - jsonBytes(doc), maxBytes);
    return { doc: value, path: "" };
  }
  const last = parts[parts.length - 1];
  const target = get(doc, parts.slice(0, -1)); // the parent must exist
  let index = null;
  if (Array.isArray(target)) {
    index = last === "-" ? target.length : isIndex(last) ? Number(last) : NaN;
    if (!(index >= 0 && index <= target.length)) throw new PatchError(`index ${last} is out of range at ${pointer(parts)}`);
  } else if (!isPlainObject(target)) {
    throw new PatchError(`${pointer(parts)}: the parent is not an object or a list`);
  }
  const delta = addDelta(target, last, valueBytes);
  checkSize(op, jsonBytes(doc) + delta, delta, maxBytes);
  const [root, copies] = copyPath(doc, parts, (parent) => (index !== null ? inserted(parent, index, value) : withMember(parent, last, value)));
  settle(copies, delta);
  return { doc: root, path: index !== null ? pointer([...parts.slice(0, -1), index]) : pointer(parts) };
}

function remove(doc, parts) {
  if (parts.length === 0) throw new PatchError("cannot remove the whole document");
  get(doc, parts);
  const last = parts[parts.length - 1];
  const delta = removeDelta(get(doc, parts.slice(0, -1)), last);
  const [root, copies] = copyPath(doc, parts, (parent) => (Array.isArray(parent) ? removed(parent, Number(last)) : withoutMember(parent, last)));
  settle(copies, delta);
  return { doc: root, path: pointer(parts) };
}

/**
 * Apply one operation to `doc`. Returns {doc, path}: the new document and the pointer of what
 * changed, with "/-" resolved to the index the value landed at. Throws PatchError, also for an
 * operation that would make the document larger than `maxBytes` (it is then not applied).
 */
export function applyOperation(doc, op, { maxBytes = MAX_SCENARIO_BYTES } = {}) {
  if (!op || typeof op !== "object" || typeof op.op !== "string" || typeof op.path !== "string") throw new PatchError("not an operation");
  const parts = parsePointer(op.path);
  if (parts === null) throw new PatchError(`"${op.path}" is not a JSON pointer`);
  switch (op.op) {
    case "add":
      // The value comes from the frame: its own copy (its size is bounded by the frame's text).
      return add(doc, parts, clone(op.value), op, maxBytes);
    case "remove":
      return remove(doc, parts);
    case "replace": {
      const old = get(doc, parts);
      const value = clone(op.value);
      const delta = jsonBytes(value) - jsonBytes(old);
      checkSize(op, jsonBytes(doc) + delta, delta, maxBytes);
      if (parts.length === 0) return { doc: value, path: "" };
      const last = parts[parts.length - 1];
      const [root, copies] = copyPath(doc, parts, (parent) => {
        if (!Array.isArray(parent)) return withMember(parent, last, value);
        const copy = parent.slice();
        copy[Number(last)] = value;
        return copy;
      });
      settle(copies, delta);
      return { doc: root, path: op.path };
    }
    case "move":
    case "copy": {
      const fromParts = parsePointer(op.from);
      if (fromParts === null) throw new PatchError(`"${op.from}" is not a JSON pointer`);
      // Shared, not cloned: neither place is ever changed in place.
      const value = get(doc, fromParts);
      if (op.op === "copy") return add(doc, parts, value, op, maxBytes);
      // A move grows the document by at most a longer key: bounded by its size before.
      return add(remove(doc, fromParts).doc, parts, value, op, Math.max(maxBytes, jsonBytes(doc)));
    }
    case "test": {
      const actual = get(doc, parts);
      if (!sameJson(actual, op.value)) throw new PatchError(`test failed at ${op.path}`);
      return { doc, path: op.path };
    }
    default:
      throw new PatchError(`unknown operation "${op.op}"`);
  }
}
