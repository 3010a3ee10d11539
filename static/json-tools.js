// JSON helpers with no DOM: parsing with precise error positions, scenario
// validation (the same rules as the server's agent/scenario.py, plus
// non-blocking warnings), JSON Pointer helpers and a structural diff in the
// server's `changes` format.

export const MAX_SCENARIO_BYTES = 64 * 1024;
export const MAX_SCENARIO_DEPTH = 32;

/** 1-based line and column of a UTF-16 offset in text. */
export function lineColumn(text, offset) {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      line += 1;
      lineStart = i + 1;
    } else if (c === 13) {
      if (text.charCodeAt(i + 1) === 10) i += 1;
      line += 1;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

class JsonSyntaxError extends Error {
  constructor(message, offset) {
    super(message);
    this.offset = offset;
  }
}

/**
 * Walk the text as JSON (RFC 8259) and throw a JsonSyntaxError at the first
 * problem, with a message written for people. Builds no values: the browser's
 * JSON.parse does that once this says the text is fine.
 */
function scan(text) {
  let i = 0;
  const n = text.length;

  const describe = (pos) => {
    if (pos >= n) return "the end of the text";
    const ch = text[pos];
    if (ch === "\n" || ch === "\r") return "a line break";
    return `'${ch}'`;
  };
  const fail = (message, pos = i) => {
    throw new JsonSyntaxError(message, pos);
  };
  const ws = () => {
    while (i < n) {
      const c = text[i];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") i += 1;
      else break;
    }
  };

  function value(depth) {
    ws();
    if (i >= n) fail("Unexpected end of text: a value is missing");
    const c = text[i];
    if (c === "{") return object(depth + 1);
    if (c === "[") return array(depth + 1);
    if (c === '"') return string();
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    if (c === "'") fail("Strings must use double quotes (\"), not single quotes");
    if (c === "}" || c === "]") fail(`Unexpected ${describe(i)}: a value is missing (trailing comma?)`);
    fail(`Unexpected ${describe(i)}: expected a value (string, number, object, array, true, false or null)`);
  }

  function object(depth) {
    const open = i;
    i += 1; // {
    ws();
    if (text[i] === "}") {
      i += 1;
      return;
    }
    for (;;) {
      ws();
      if (i >= n) fail("Unexpected end of text: an object opened here is not closed with '}'", open);
      if (text[i] === "}") fail("Trailing comma before '}' is not allowed in JSON");
      if (text[i] !== '"') {
        if (text[i] === "'") fail("Property names must use double quotes (\"), not single quotes");
        fail(`Expected a property name in double quotes, found ${describe(i)}`);
      }
      string();
      ws();
      if (text[i] !== ":") fail(`Expected ':' after the property name, found ${describe(i)}`);
      i += 1;
      value(depth);
      ws();
      if (text[i] === ",") {
        i += 1;
        continue;
      }
      if (text[i] === "}") {
        i += 1;
        return;
      }
      if (i >= n) fail("Unexpected end of text: an object opened here is not closed with '}'", open);
      fail(`Expected ',' or '}' after a property value, found ${describe(i)}`);
    }
  }

  function array(depth) {
    const open = i;
    i += 1; // [
    ws();
    if (text[i] === "]") {
      i += 1;
      return;
    }
    for (;;) {
      ws();
      if (text[i] === "]") fail("Trailing comma before ']' is not allowed in JSON");
      value(depth);
      ws();
      if (text[i] === ",") {
        i += 1;
        continue;
      }
      if (text[i] === "]") {
        i += 1;
        return;
      }
      if (i >= n) fail("Unexpected end of text: a list opened here is not closed with ']'", open);
      fail(`Expected ',' or ']' after a list item, found ${describe(i)}`);
    }
  }

  function string() {
    const open = i;
    i += 1; // "
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 34) {
        i += 1;
        return;
      }
      if (c === 92) {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail("Invalid \\u escape: four hex digits are needed");
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          fail(`Invalid escape '\\${e ?? ""}' in a string`);
        }
        continue;
      }
      if (c < 0x20) fail("Line breaks and control characters must be escaped inside a string (use \\n)");
      i += 1;
    }
    fail("Unexpected end of text: a string opened here is not closed with '\"'", open);
  }

  function number() {
    const start = i;
    if (text[i] === "-") i += 1;
    if (text[i] === "0") i += 1;
    else if (text[i] >= "1" && text[i] <= "9") while (text[i] >= "0" && text[i] <= "9") i += 1;
    else fail("Invalid number: a digit must follow '-'", start);
    if (text[i] === ".") {
      i += 1;
      if (!(text[i] >= "0" && text[i] <= "9")) fail("Invalid number: a digit must follow '.'");
      while (text[i] >= "0" && text[i] <= "9") i += 1;
    }
    if (text[i] === "e" || text[i] === "E") {
      i += 1;
      if (text[i] === "+" || text[i] === "-") i += 1;
      if (!(text[i] >= "0" && text[i] <= "9")) fail("Invalid number: the exponent needs digits");
      while (text[i] >= "0" && text[i] <= "9") i += 1;
    }
    if (text[i] >= "0" && text[i] <= "9") fail("Invalid number: leading zeros are not allowed", start);
  }

  ws();
  if (i >= n) fail("The text is empty: expected a JSON object");
  value(0);
  ws();
  if (i < n) fail(`Unexpected ${describe(i)} after the end of the JSON value`);
}

/**
 * Parse JSON text. Returns {ok: true, value} or
 * {ok: false, error: {message, offset, line, column}}.
 */
export function parseJson(text) {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (nativeError) {
    try {
      scan(text);
    } catch (e) {
      if (e instanceof JsonSyntaxError) {
        const { line, column } = lineColumn(text, e.offset);
        return { ok: false, error: { message: e.message, offset: e.offset, line, column } };
      }
      throw e;
    }
    // The scanner found nothing but JSON.parse did (should not happen).
    return { ok: false, error: { message: String(nativeError.message), offset: 0, line: 1, column: 1 } };
  }
}

/** Nesting depth like the server's: a scalar is 0, {} or [] is 1. */
export function depth(value) {
  let deepest = 0;
  const stack = [[value, 0]];
  while (stack.length) {
    let [item, level] = stack.pop();
    if (item !== null && typeof item === "object") {
      level += 1;
      if (level > deepest) deepest = level;
      for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, level]);
    }
  }
  return deepest;
}

export function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * Check a parsed value as a scenario. Errors block applying it (the server
 * would refuse it too); warnings point at unusual shapes but allow it.
 * Each item is {path, message}, path a JSON Pointer ("" for the whole thing).
 */
export function validateScenario(value) {
  const errors = [];
  const warnings = [];
  if (!isPlainObject(value)) {
    errors.push({ path: "", message: "The scenario must be a JSON object ({ ... })" });
    return { errors, warnings };
  }
  if (!("title" in value)) errors.push({ path: "/title", message: "title is required" });
  else if (typeof value.title !== "string") errors.push({ path: "/title", message: "title must be a string" });
  else if (!value.title.trim()) errors.push({ path: "/title", message: "title must not be empty" });

  if (depth(value) > MAX_SCENARIO_DEPTH)
    errors.push({ path: "", message: `The scenario is nested deeper than ${MAX_SCENARIO_DEPTH} levels` });
  const size = new TextEncoder().encode(JSON.stringify(value)).length;
  if (size > MAX_SCENARIO_BYTES)
    errors.push({ path: "", message: `The scenario is larger than ${MAX_SCENARIO_BYTES / 1024} KiB` });

  for (const key of ["summary", "setting", "difficulty"]) {
    if (key in value && typeof value[key] !== "string" && !(key === "setting" && isPlainObject(value[key])))
      warnings.push({ path: `/${key}`, message: `${key} is usually text` });
  }
  const listOf = (key, check) => {
    if (!(key in value)) return;
    if (!Array.isArray(value[key])) {
      warnings.push({ path: `/${key}`, message: `${key} is usually a list` });
      return;
    }
    value[key].forEach((item, index) => {
      const problem = check(item);
      if (problem) warnings.push({ path: `/${key}/${index}`, message: `${key}[${index}] ${problem}` });
    });
  };
  listOf("roles", (r) => (isPlainObject(r) ? (typeof r.name === "string" && r.name.trim() ? null : "has no name") : typeof r === "string" ? null : "should be an object with a name"));
  listOf("steps", (s) => (isPlainObject(s) || typeof s === "string" ? null : "should be an object with a title"));
  listOf("objectives", (o) => (typeof o === "string" ? null : "should be text"));
  return { errors, warnings };
}

/** Parse text and validate it as a scenario in one go. */
export function checkScenarioText(text) {
  const parsed = parseJson(text);
  if (!parsed.ok) return { ok: false, syntax: parsed.error, errors: [], warnings: [] };
  const { errors, warnings } = validateScenario(parsed.value);
  return { ok: errors.length === 0, value: parsed.value, syntax: null, errors, warnings };
}

// ---- JSON Pointer (RFC 6901) ------------------------------------------------

export function escapePointerToken(token) {
  return String(token).replace(/~/g, "~0").replace(/\//g, "~1");
}

export function pointer(parts) {
  return parts.map((p) => "/" + escapePointerToken(p)).join("");
}

export function parsePointer(ptr) {
  if (ptr === "" || ptr === undefined || ptr === null) return [];
  if (!ptr.startsWith("/")) return null;
  return ptr
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** The parent pointer ("/roles/2/name" -> "/roles/2"; "/title" -> ""). */
export function parentPointer(ptr) {
  const i = ptr.lastIndexOf("/");
  return i <= 0 ? "" : ptr.slice(0, i);
}

// ---- diff ------------------------------------------------------------------

/**
 * What changed from a to b, in the server's format: [{op, path}], op one of
 * add | remove | replace. Used for undo/redo and hand edits (the server sends
 * its own list with each new version).
 */
export function diff(a, b) {
  const out = [];
  walk(a, b, [], out);
  return out;
}

function walk(a, b, path, out) {
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const key of Object.keys(a)) if (!(key in b)) out.push({ op: "remove", path: pointer([...path, key]) });
    for (const key of Object.keys(b)) {
      if (!(key in a)) out.push({ op: "add", path: pointer([...path, key]) });
      else walk(a[key], b[key], [...path, key], out);
    }
  } else if (Array.isArray(a) && Array.isArray(b)) {
    const common = Math.min(a.length, b.length);
    for (let i = 0; i < common; i++) walk(a[i], b[i], [...path, i], out);
    for (let i = a.length; i < b.length; i++) out.push({ op: "add", path: pointer([...path, i]) });
    for (let i = b.length; i < a.length; i++) out.push({ op: "remove", path: pointer([...path, i]) });
  } else if (a !== b) {
    // Different scalars, or different kinds (object vs list vs scalar).
    out.push({ op: "replace", path: pointer(path) });
  }
}
