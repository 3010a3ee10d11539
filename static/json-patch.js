// JSON Patch (RFC 6902) applied to a copy, for the page's live preview of a modify: the server
// applies the same operations to its working copy and sends each as a `scenario_patch` frame.
// Pure: no DOM. The document passed in is never changed; the result shares the untouched parts.

import { isPlainObject, parsePointer, pointer } from "./json-tools.js";

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

/** Copy the containers along `parts` (all but the last), returning [newRoot, parent of the last]. */
function copyPath(doc, parts) {
  const root = Array.isArray(doc) ? doc.slice() : { ...doc };
  let at = root;
  for (const p of parts.slice(0, -1)) {
    const next = Array.isArray(at) ? at[Number(p)] : at[p];
    if (next === undefined || (typeof next !== "object") || next === null) throw new PatchError(`${pointer(parts)}: the parent does not exist`);
    const copy = Array.isArray(next) ? next.slice() : { ...next };
    if (Array.isArray(at)) at[Number(p)] = copy;
    else at[p] = copy;
    at = copy;
  }
  return [root, at];
}

function add(doc, parts, value) {
  if (parts.length === 0) return { doc: clone(value), path: "" };
  get(doc, parts.slice(0, -1)); // the parent must exist
  const [root, parent] = copyPath(doc, parts);
  const last = parts[parts.length - 1];
  if (Array.isArray(parent)) {
    const index = last === "-" ? parent.length : isIndex(last) ? Number(last) : NaN;
    if (!(index >= 0 && index <= parent.length)) throw new PatchError(`index ${last} is out of range at ${pointer(parts)}`);
    parent.splice(index, 0, clone(value));
    return { doc: root, path: pointer([...parts.slice(0, -1), index]) };
  }
  if (!isPlainObject(parent)) throw new PatchError(`${pointer(parts)}: the parent is not an object or a list`);
  parent[last] = clone(value);
  return { doc: root, path: pointer(parts) };
}

function remove(doc, parts) {
  if (parts.length === 0) throw new PatchError("cannot remove the whole document");
  get(doc, parts);
  const [root, parent] = copyPath(doc, parts);
  const last = parts[parts.length - 1];
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete parent[last];
  return { doc: root, path: pointer(parts) };
}

/**
 * Apply one operation to `doc`. Returns {doc, path}: the new document and the pointer of what
 * changed, with "/-" resolved to the index the value landed at. Throws PatchError.
 */
export function applyOperation(doc, op) {
  if (!op || typeof op !== "object" || typeof op.op !== "string" || typeof op.path !== "string") throw new PatchError("not an operation");
  const parts = parsePointer(op.path);
  if (parts === null) throw new PatchError(`"${op.path}" is not a JSON pointer`);
  switch (op.op) {
    case "add":
      return add(doc, parts, op.value);
    case "remove":
      return remove(doc, parts);
    case "replace": {
      get(doc, parts);
      if (parts.length === 0) return { doc: clone(op.value), path: "" };
      const [root, parent] = copyPath(doc, parts);
      const last = parts[parts.length - 1];
      if (Array.isArray(parent)) parent[Number(last)] = clone(op.value);
      else parent[last] = clone(op.value);
      return { doc: root, path: op.path };
    }
    case "move":
    case "copy": {
      const fromParts = parsePointer(op.from);
      if (fromParts === null) throw new PatchError(`"${op.from}" is not a JSON pointer`);
      const value = get(doc, fromParts);
      const base = op.op === "move" ? remove(doc, fromParts).doc : doc;
      return add(base, parts, value);
    }
    case "test": {
      const actual = get(doc, parts);
      if (JSON.stringify(actual) !== JSON.stringify(op.value)) throw new PatchError(`test failed at ${op.path}`);
      return { doc, path: op.path };
    }
    default:
      throw new PatchError(`unknown operation "${op.op}"`);
  }
}
