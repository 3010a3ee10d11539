"""Edits as JSON Patch (RFC 6902) with JSON Pointers (RFC 6901), read as they stream.

A modify answer's ```patch block holds a JSON array of operations:

    [{"op": "replace", "path": "/title", "value": "Blue Harbor"},
     {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks"}},
     {"op": "remove", "path": "/steps/3"}]

- `OperationReader.feed(text)` returns each operation the moment its closing brace
  arrives, whatever the chunking (tests/test_patch.py checks that with hypothesis).
- `apply_operation(doc, op, index, bounds)` applies one operation to a working copy;
  `apply_patch(doc, ops)` applies a list atomically to a copy (the caller's document
  is never changed).
- `Bounds` keeps the working copy within MAX_SCENARIO_BYTES and MAX_DEPTH while the
  operations apply: each operation's growth is measured before it changes anything (a
  copy's value, an add's value) and the operation that would pass a bound is refused,
  so a patch of a few hundred bytes whose copies double the document stops at 64 KiB
  instead of growing without end.
- `describe_operation(op, doc_before)` gives its words for the change list.
- `EXAMPLE_PATCH_OPS`: the operations the modify prompt shows as its example. They
  cannot apply to a user's scenario (the first is a test no real scenario passes), and
  `PatchPreview` refuses an answer that starts with them, saying it is the example.

Errors are InvalidScenario subclasses (so one `except InvalidScenario` covers a bad
block, a bad patch and a bad result): `PatchSyntaxError` (with line and column) when
the text cannot be an array of operations, `PatchError` (with the operation's index,
op and path) when an operation cannot apply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.scenario import (
    MAX_DEPTH,
    MAX_SCENARIO_BYTES,
    InvalidScenario,
    depth,
    describe,
    json_type,
    parse_json,
    split_pointer,
    validate_modified,
)

OPS = ("add", "remove", "replace", "move", "copy", "test")

# The modify prompt's example (agent/intents.py renders it). Its first operation tests the
# title against a value no real scenario has, so the example copied as an answer cannot
# apply to the user's document; PatchPreview refuses it with EXAMPLE_REASON.
EXAMPLE_PATCH_OPS: tuple[dict[str, Any], ...] = (
    {"op": "test", "path": "/title", "value": "Example only: not a real scenario"},
    {"op": "replace", "path": "/title", "value": "Night Shift"},
    {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks hard questions."}},
)
EXAMPLE_REASON = "the patch is the prompt's example, not the requested change"
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # at most 9 digits: int() of the token stays cheap


class PatchSyntaxError(InvalidScenario):
    """The patch text cannot be a JSON array of operation objects."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"the patch is not a JSON array of operations: {reason} (line {line}, column {column})")
        self.reason = reason
        self.line = line
        self.column = column
        # The operations the failing `feed` call completed before the error (they were
        # not returned): a caller previewing operations can still show them.
        self.operations: list[dict[str, Any]] = []


class PatchError(InvalidScenario):
    """Operation `index` (0-based; the message counts from 1) cannot apply."""

    def __init__(self, index: int, path: Any, reason: str, op: Any = None) -> None:
        where = " ".join(str(part) for part in (op, path) if isinstance(part, str))
        prefix = f"operation {index + 1}" + (f" ({where})" if where else "")
        super().__init__(f"{prefix}: {reason}")
        self.index = index
        self.path = path
        self.reason = reason
        self.op = op


# ---------------------------------------------------------------------------
# Reading the array as it streams
# ---------------------------------------------------------------------------

_ELEMENT_SPECIAL = re.compile(r'["\\\[\]{}]')
_NON_SPACE = re.compile(r"\S")
_BEFORE, _ARRAY, _ELEMENT, _DONE = "before", "array", "element", "done"
_CLOSERS = {"{": "}", "[": "]"}


class OperationReader:
    """An incremental reader of one JSON array of objects.

    `feed(text)` returns the elements completed by that text, parsed (with the
    hostile-safe `agent.scenario.parse_json`), in order. Any text before the '[' is
    skipped, unless it holds '{', '}', ']' or '"' (then this is not an array). Work is
    linear in the text: each character is looked at a bounded number of times.
    `close()` raises when the array never closed. After an error the reader is spent.
    """

    def __init__(self, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.count = 0  # elements returned so far
        self._phase = _BEFORE
        self._expect = "first"  # in the array: "first" ('{' or ']'), "comma" (',' or ']'), "element" ('{')
        self._stack: list[str] = []  # open brackets of the current element
        self._in_string = False
        self._escape = False
        self._parts: list[str] = []
        self._start = (1, 1)  # line, column of the current element's '{'
        self._fed = 0
        self._line = 1
        self._column0 = 0  # characters already on the current line before this chunk
        # Within the chunk being read: how far positions have been counted (`_where`), the
        # line there, and the chunk's last newline before it (-1: none yet).
        self._seen = 0
        self._seen_line = 1
        self._seen_newline = -1
        self._failed: PatchSyntaxError | None = None

    @property
    def done(self) -> bool:
        """The array's closing ']' has been read."""
        return self._phase == _DONE

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The elements this text completed. On PatchSyntaxError, those completed before
        the error are in its `operations`."""
        self._raise_again()
        out: list[dict[str, Any]] = []
        try:
            self._feed(text, out)
        except PatchSyntaxError as exc:
            exc.operations = out
            raise
        return out

    def _raise_again(self) -> None:
        failed = self._failed
        if failed is not None:
            raise PatchSyntaxError(failed.reason, failed.line, failed.column)

    def _feed(self, text: str, out: list[dict[str, Any]]) -> None:
        self._seen, self._seen_line, self._seen_newline = 0, self._line, -1
        self._fed += len(text)
        if self._fed > self.max_bytes:
            self._fail(f"it is larger than {self.max_bytes // 1024} KiB", text, len(text) - 1)
        position = 0
        while position < len(text):
            phase = self._phase
            if phase == _ELEMENT:
                position = self._element(text, position, out)
            elif phase == _ARRAY:
                position = self._array(text, position, out)
            elif phase == _BEFORE:
                position = self._before(text, position)
            else:
                match = _NON_SPACE.search(text, position)
                if match:
                    self._fail("there is text after the end of the array", text, match.start())
                position = len(text)
        self._advance(text)

    def close(self) -> None:
        """End of the block: the array must have closed."""
        self._raise_again()
        if self._phase == _DONE:
            return
        if self._phase == _BEFORE:
            reason = "the block holds no '[' (a patch is a JSON array of operations)"
        elif self._phase == _ELEMENT:
            reason = f"operation {self.count + 1} ended before its closing '}}'"
        else:
            reason = "the patch ended before its closing ']'"
        self._failed = PatchSyntaxError(reason, self._line, self._column0 + 1)
        raise self._failed

    # -- phases ----------------------------------------------------------------------

    def _before(self, text: str, position: int) -> int:
        for index in range(position, len(text)):
            char = text[index]
            if char == "[":
                self._phase = _ARRAY
                return index + 1
            if char in '{}]"':
                self._fail(f"expected '[' to start the array of operations, found '{char}'", text, index)
        return len(text)

    def _array(self, text: str, position: int, out: list[dict[str, Any]]) -> int:
        match = _NON_SPACE.search(text, position)
        if match is None:
            return len(text)
        index = match.start()
        char = text[index]
        if char == "{" and self._expect in ("first", "element"):
            self._phase = _ELEMENT
            self._stack = ["{"]
            self._in_string = self._escape = False
            self._parts = []
            self._start = self._where(text, index)
            return self._element(text, index + 1, out, begin=index)
        if char == "]" and self._expect in ("first", "comma"):
            self._phase = _DONE
            return index + 1
        if char == "," and self._expect == "comma":
            self._expect = "element"
            return index + 1
        if self._expect == "comma":
            self._fail(f"expected ',' or ']' after operation {self.count}, found '{char}'", text, index)
        if char == "]":
            self._fail("expected an operation after ',', found ']'", text, index)
        self._fail(f"operation {self.count + 1} is not a JSON object (found '{char}')", text, index)
        return len(text)  # not reached

    def _element(self, text: str, position: int, out: list[dict[str, Any]], begin: int | None = None) -> int:
        start = position if begin is None else begin
        if self._escape:
            self._escape = False
            position += 1
        while True:
            match = _ELEMENT_SPECIAL.search(text, position)
            if match is None:
                self._parts.append(text[start:])
                return len(text)
            index = match.start()
            char = text[index]
            if self._in_string:
                if char == '"':
                    self._in_string = False
                elif char == "\\":
                    if index + 1 == len(text):
                        self._escape = True
                        self._parts.append(text[start:])
                        return len(text)
                    position = index + 2
                    continue
                position = index + 1
                continue
            if char == '"':
                self._in_string = True
            elif char in "[{":
                self._stack.append(char)
                if len(self._stack) > self.max_depth:
                    self._fail(f"operation {self.count + 1} is nested deeper than {self.max_depth} levels", text, index)
            elif char in "]}":
                if _CLOSERS[self._stack[-1]] != char:
                    self._fail(f"'{char}' does not match '{self._stack[-1]}'", text, index)
                self._stack.pop()
                if not self._stack:
                    self._parts.append(text[start: index + 1])
                    self._finish(out)
                    return index + 1
            position = index + 1

    def _finish(self, out: list[dict[str, Any]]) -> None:
        element_text = "".join(self._parts)
        self._parts = []
        self._phase = _ARRAY
        self._expect = "comma"
        try:
            value = parse_json(element_text, self.max_bytes, self.max_depth)
        except InvalidScenario as exc:
            line, column = self._start
            if exc.line is not None and exc.column is not None:
                # Positions inside the element, moved to the block's coordinates.
                column = column + exc.column - 1 if exc.line == 1 else exc.column
                line += exc.line - 1
            reason = str(exc).split(" (line ")[0]
            self._failed = PatchSyntaxError(f"operation {self.count + 1}: {reason}", line, column)
            raise self._failed from None
        self.count += 1
        out.append(value)

    # -- positions ---------------------------------------------------------------------

    def _where(self, text: str, index: int) -> tuple[int, int]:
        # Counted on from the last position asked for in this chunk (positions only move
        # forward within a chunk), so a chunk of many small elements is read once, not once
        # per element.
        if index < self._seen:
            self._seen, self._seen_line, self._seen_newline = 0, self._line, -1
        newlines = text.count("\n", self._seen, index)
        if newlines:
            self._seen_line += newlines
            self._seen_newline = text.rfind("\n", self._seen, index)
        self._seen = index
        newline = self._seen_newline
        column = index - newline if newline >= 0 else self._column0 + index + 1
        return self._seen_line, column

    def _advance(self, text: str) -> None:
        newline = text.rfind("\n")
        if newline >= 0:
            self._line += text.count("\n")
            self._column0 = len(text) - newline - 1
        else:
            self._column0 += len(text)

    def _fail(self, reason: str, text: str, index: int) -> None:
        line, column = self._where(text, index)
        self._failed = PatchSyntaxError(reason, line, column)
        raise self._failed


# ---------------------------------------------------------------------------
# Applying operations
# ---------------------------------------------------------------------------

def clone(value: Any) -> Any:
    """A deep copy of a JSON value (faster than copy.deepcopy for plain JSON)."""
    if isinstance(value, dict):
        return {key: clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality (RFC 6902 4.6): 1 == 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _show(tokens: list[str]) -> str:
    return "".join("/" + _escape_token(t) for t in tokens) or "the document"


def _preview(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= 60 else text[:59] + "…"


class _Target:
    """Where a pointer leads: the container holding its last token."""

    def __init__(self, index: int, op: str, path: str) -> None:
        self.index, self.op, self.path = index, op, path

    def error(self, reason: str) -> PatchError:
        return PatchError(self.index, self.path, reason, self.op)

    def tokens(self, pointer: Any, name: str = "path") -> list[str]:
        if not isinstance(pointer, str):
            raise self.error(f'"{name}" must be a string (a JSON pointer such as /steps/0/title)')
        try:
            return split_pointer(pointer)
        except ValueError as exc:
            raise self.error(f'"{name}" {exc}') from None

    def list_index(self, node: list[Any], token: str, prefix: list[str], *, insert: bool = False) -> int:
        if token == "-":
            if insert:
                return len(node)
            raise self.error(f"'-' (the end of the list {_show(prefix)}) names no existing item")
        if not _INDEX.fullmatch(token):
            raise self.error(f"'{token[:40]}' is not a list index ({_show(prefix)} is a list)")
        position = int(token)
        limit = len(node) + 1 if insert else len(node)
        if position >= limit:
            items = f"{len(node)} item" + ("" if len(node) == 1 else "s")
            hint = f"; an add may use 0 to {len(node)} or -" if insert else ""
            raise self.error(f"index {position} is out of range (the list has {items}{hint})")
        return position

    def child(self, node: Any, token: str, prefix: list[str]) -> Any:
        if isinstance(node, dict):
            if token not in node:
                raise self.error(f'{_show(prefix)} has no member "{token[:40]}"')
            return node[token]
        if isinstance(node, list):
            return node[self.list_index(node, token, prefix)]
        raise self.error(f"{_show(prefix)} is a {json_type(node)}, not an object or a list")

    def value_at(self, doc: Any, tokens: list[str]) -> Any:
        node = doc
        for level, token in enumerate(tokens):
            node = self.child(node, token, tokens[:level])
        return node

    def parent(self, doc: Any, tokens: list[str]) -> Any:
        parent = self.value_at(doc, tokens[:-1])
        if not isinstance(parent, (dict, list)):
            raise self.error(f"{_show(tokens[:-1])} is a {json_type(parent)}, not an object or a list")
        return parent


def json_size(value: Any) -> int:
    """The bytes of a JSON value as agent.scenario measures a scenario: json.dumps with its
    default separators, UTF-8."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _member_size(key: str) -> int:
    return json_size(key) + 2  # '"key": '


class Bounds:
    """What a working copy may become while a patch applies, kept as each operation applies.

    `size` is the document's exact serialized size (`json_size`): every operation adds what
    it inserts (its value's size, a member's key, a ", ") and takes off what it removes or
    replaces, measured before anything changes. An operation that would take the size past
    `max_bytes`, or nest a value deeper than `max_depth`, is refused, so the working copy
    never exceeds the bounds the finished scenario must meet; memory stays within them.

    `copied` adds up the values copied, and the values moved deeper: each costs time in
    proportion to its size (measured and cloned), and a copy followed by a remove leaves
    the size as it was, so `max_copied` (8 times max_bytes) bounds the work a patch can
    ask for, whatever its length.
    """

    def __init__(self, doc: Any, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> None:
        self.size = json_size(doc)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_copied = 8 * max_bytes
        self.copied = 0

    def grow(self, target: _Target, delta: int, deepest: int) -> None:
        """Account for an operation that adds `delta` bytes and puts a value's deepest
        level at `deepest`; PatchError (and nothing counted) past a bound."""
        if deepest > self.max_depth:
            raise target.error(f"it would nest the scenario deeper than {self.max_depth} levels")
        if self.size + delta > self.max_bytes:
            raise target.error(f"it would make the scenario larger than {self.max_bytes // 1024} KiB")
        self.size += delta

    def copy(self, target: _Target, value: Any) -> int:
        """Count a value about to be copied or moved deeper; its size, or PatchError past
        `max_copied`."""
        size = json_size(value)
        if self.copied + size > self.max_copied:
            raise target.error(f"the patch copies or moves more than {self.max_copied // 1024} KiB in total")
        self.copied += size
        return size


class _Value:
    """A value about to be inserted, with its size (what it adds; 0 for a moved value,
    whose bytes are in the document already) and depth, measured once."""

    __slots__ = ("value", "size", "depth")

    def __init__(self, value: Any, size: int, depth_: int) -> None:
        self.value, self.size, self.depth = value, size, depth_


def _measured(value: Any, bounds: Bounds | None) -> _Value:
    if bounds is None:
        return _Value(value, 0, 0)
    return _Value(value, json_size(value), depth(value))


def _add(target: _Target, doc: Any, tokens: list[str], new: _Value, bounds: Bounds | None, *, fresh: bool = True) -> Any:
    """Insert `new.value` at tokens (RFC 6902 add), within `bounds`. `fresh`: insert a
    copy (the value belongs to the operation or lives elsewhere in the document)."""
    value = new.value
    if not tokens:
        if bounds is not None:
            bounds.grow(target, (new.size if fresh else json_size(value)) - bounds.size, new.depth)
        return clone(value) if fresh else value
    parent = target.parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if bounds is not None:
            if last in parent:
                delta = new.size - json_size(parent[last])
            else:
                delta = _member_size(last) + new.size + (2 if parent else 0)
            bounds.grow(target, delta, len(tokens) + new.depth)
        parent[last] = clone(value) if fresh else value
    else:
        position = target.list_index(parent, last, tokens[:-1], insert=True)
        if bounds is not None:
            bounds.grow(target, new.size + (2 if parent else 0), len(tokens) + new.depth)
        parent.insert(position, clone(value) if fresh else value)
    return doc


def _remove(target: _Target, doc: Any, tokens: list[str], bounds: Bounds | None, *, moving: bool = False) -> Any:
    """Removes and returns the value at tokens. `moving`: the value's own bytes stay
    counted (it is about to be inserted again), only its member's key and separator go."""
    if not tokens:
        raise target.error("the whole document cannot be removed")
    parent = target.parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise target.error(f'{_show(tokens[:-1])} has no member "{last[:40]}"')
        value = parent.pop(last)
        freed = _member_size(last) if bounds is not None else 0
    else:
        value = parent.pop(target.list_index(parent, last, tokens[:-1]))
        freed = 0
    if bounds is not None:
        freed += (0 if moving else json_size(value)) + (2 if parent else 0)
        bounds.size -= freed
    return value


def check_operation(op: Any, index: int) -> str:
    """The op name, once the operation has the members RFC 6902 requires; else PatchError."""
    if not isinstance(op, dict):
        raise PatchError(index, None, f"an operation must be a JSON object, not a JSON {json_type(op)}")
    name = op.get("op")
    path = op.get("path")
    if name not in OPS:
        shown = f"'{name}'" if isinstance(name, str) else "missing" if name is None else f"a JSON {json_type(name)}"
        raise PatchError(index, path, f'"op" is {shown}: use add, remove, replace, move, copy or test')
    if not isinstance(path, str):
        raise PatchError(index, None, 'it has no "path" string (a JSON pointer such as /steps/0/title)', name)
    if name in ("add", "replace", "test") and "value" not in op:
        raise PatchError(index, path, f'a {name} needs a "value"', name)
    if name in ("move", "copy") and not isinstance(op.get("from"), str):
        raise PatchError(index, path, f'a {name} needs a "from" string (the JSON pointer to take the value from)', name)
    return name


def apply_operation(doc: Any, op: Any, index: int, bounds: Bounds | None = None) -> Any:
    """Apply one operation to `doc` IN PLACE and return the document (a new object only
    when the operation replaces the whole document, path "").

    With `bounds` (made for this document), the operation is refused before it changes
    anything when it would take the document past them, and `bounds.size` follows the
    document. Raises PatchError naming the operation (`index` is 0-based; the message counts
    from 1), its path and the reason. After an error `doc` may be partly changed (a move
    that removed its value but could not place it): apply to a working copy and drop it on
    error, as `apply_patch` does.
    """
    name = check_operation(op, index)
    target = _Target(index, name, op["path"])
    tokens = target.tokens(op["path"])
    if name == "add":
        return _add(target, doc, tokens, _measured(op["value"], bounds), bounds)
    if name == "remove":
        _remove(target, doc, tokens, bounds)
        return doc
    if name == "replace":
        if tokens:
            # The member must exist (add would create it): found before anything is measured.
            parent = target.parent(doc, tokens)
            last = tokens[-1]
            if isinstance(parent, dict) and last not in parent:
                raise target.error(f'{_show(tokens[:-1])} has no member "{last[:40]}" to replace (use add)')
            if isinstance(parent, list):
                position = target.list_index(parent, last, tokens[:-1])
                new = _measured(op["value"], bounds)
                if bounds is not None:
                    bounds.grow(target, new.size - json_size(parent[position]), len(tokens) + new.depth)
                parent[position] = clone(new.value)
                return doc
        return _add(target, doc, tokens, _measured(op["value"], bounds), bounds)
    if name == "test":
        actual = target.value_at(doc, tokens)
        if not json_equal(actual, op["value"]):
            raise target.error(f"the value at {_show(tokens)} is {_preview(actual)}, not {_preview(op['value'])}")
        return doc
    source = target.tokens(op["from"], "from")
    if name == "copy":
        value = target.value_at(doc, source)
        if bounds is None:
            return _add(target, doc, tokens, _Value(value, 0, 0), None)
        size = bounds.copy(target, value)
        return _add(target, doc, tokens, _Value(value, size, depth(value)), bounds)
    # move
    if tokens[: len(source)] == source and len(tokens) > len(source):
        raise target.error(f"{_show(source)} cannot be moved into its own child {_show(tokens)}")
    value = target.value_at(doc, source)  # the source must exist before anything changes
    if tokens == source:
        return doc
    # Moved no deeper than it was, a value cannot nest the document deeper than it is.
    moved = _Value(value, 0, 0)
    if bounds is not None and len(tokens) > len(source):
        bounds.copy(target, value)
        moved.depth = depth(value)
    _remove(target, doc, source, bounds, moving=True)
    return _add(target, doc, tokens, moved, bounds, fresh=False)


def apply_patch(doc: Any, ops: list[Any], max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """All operations applied to a copy of `doc`, within `Bounds(doc, max_bytes, max_depth)`,
    or PatchError for the first that fails; `doc` itself is never changed."""
    if not isinstance(ops, list):
        raise PatchError(0, None, f"a patch must be a JSON array of operations, not a JSON {json_type(ops)}")
    result = clone(doc)
    bounds = Bounds(result, max_bytes, max_depth)
    for index, op in enumerate(ops):
        result = apply_operation(result, op, index, bounds)
    return result


def describe_operation(op: dict[str, Any], doc_before: Any) -> str:
    """Words for one operation, read against the document before it applies:
    "renamed the title", "added role Journalist", "removed step 4"."""
    if not isinstance(op, dict):
        return "changed the scenario"
    name = op.get("op")
    try:
        tokens = split_pointer(op.get("path", ""))
        source = split_pointer(op["from"]) if isinstance(op.get("from"), str) else None
    except (ValueError, AttributeError):
        return f"{name} {op.get('path')}"
    if name in ("move", "copy") and source is None:
        return f"{name} {op.get('path')}"
    return describe(str(name), tokens, doc_before, op.get("value"), source)


# ---------------------------------------------------------------------------
# One streamed patch, start to finish
# ---------------------------------------------------------------------------

class PatchPreview:
    """A ```patch block's text in, applied operations out, as it streams.

        preview = PatchPreview(user_scenario)
        for index, op in preview.feed(text):     # each op already applied to the working copy
            yield ScenarioPatch(op, index)
        scenario, changes = preview.finish(removals)   # after the block ends

    `feed` and `finish` raise InvalidScenario (PatchSyntaxError, PatchError, or the
    validator's reason); after that the preview is spent and the working copy must be
    dropped. The user's scenario is never changed.

    `max_bytes` bounds the block's text, the working copy at every operation (`Bounds`:
    the operation that would pass it is refused, naming it), and the finished scenario.
    An answer whose first operation is the prompt's example (EXAMPLE_PATCH_OPS) is refused
    with EXAMPLE_REASON before anything applies.
    """

    def __init__(self, original: dict[str, Any], max_bytes: int = MAX_SCENARIO_BYTES) -> None:
        self.original = original
        self.max_bytes = max_bytes
        self.working: Any = clone(original)
        self.bounds = Bounds(self.working, max_bytes)
        self.reader = OperationReader(max_bytes)
        self.changes: list[dict[str, str]] = []
        self.count = 0

    def feed(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        """(index, op) for each operation the text completed, applied in order."""
        try:
            ops = self.reader.feed(text)
        except PatchSyntaxError as exc:
            # Operations completed before the syntax error still fail the whole patch;
            # apply them only so that a PatchError among them is reported first.
            for op in exc.operations:
                self._apply(op)
            raise
        return [self._apply(op) for op in ops]

    def _apply(self, op: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        index = self.count
        check_operation(op, index)
        if index == 0 and json_equal(op, EXAMPLE_PATCH_OPS[0]):
            # The example's own test, which no user's scenario passes: the answer copied the
            # prompt. Said so, rather than as a failed test, so the repair request says so too.
            raise InvalidScenario(EXAMPLE_REASON)
        words = describe_operation(op, self.working)
        self.working = apply_operation(self.working, op, index, self.bounds)
        self.count += 1
        if op["op"] != "test":  # a test changes nothing: not a change to list
            self.changes.append({"op": op["op"], "path": op["path"], "text": words})
        return index, op

    def finish(self, removals: set[str] | frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The end of the block: the array must be complete and the result a valid
        modification of the original (agent.scenario.validate_modified). An empty
        array is valid: the original comes back with no changes."""
        self.reader.close()
        return validate_modified(self.original, self.working, removals, self.max_bytes), self.changes
