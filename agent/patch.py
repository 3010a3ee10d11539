"""Edits as JSON Patch (RFC 6902) with JSON Pointers (RFC 6901), read as they stream.

A modify answer's ```patch block holds a JSON array of operations:

    [{"op": "replace", "path": "/title", "value": "Blue Harbor"},
     {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks"}},
     {"op": "remove", "path": "/steps/3"}]

- `OperationReader.feed(text)` returns each operation the moment its closing brace
  arrives, whatever the chunking (tests/test_patch.py checks that with hypothesis).
- `apply_operation(doc, op, index)` applies one operation to a working copy;
  `apply_patch(doc, ops)` applies a list atomically to a copy (the caller's document
  is never changed).
- `describe_operation(op, doc_before)` gives its words for the change list.

Errors are InvalidScenario subclasses (so one `except InvalidScenario` covers a bad
block, a bad patch and a bad result): `PatchSyntaxError` (with line and column) when
the text cannot be an array of operations, `PatchError` (with the operation's index,
op and path) when an operation cannot apply.
"""

from __future__ import annotations

import re
from typing import Any

from agent.scenario import (
    MAX_DEPTH,
    MAX_SCENARIO_BYTES,
    InvalidScenario,
    describe,
    json_type,
    parse_json,
    split_pointer,
    validate_modified,
)

OPS = ("add", "remove", "replace", "move", "copy", "test")
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
        newline = text.rfind("\n", 0, index)
        line = self._line + text.count("\n", 0, index)
        column = index - newline if newline >= 0 else self._column0 + index + 1
        return line, column

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
        for depth, token in enumerate(tokens):
            node = self.child(node, token, tokens[:depth])
        return node

    def parent(self, doc: Any, tokens: list[str]) -> Any:
        parent = self.value_at(doc, tokens[:-1])
        if not isinstance(parent, (dict, list)):
            raise self.error(f"{_show(tokens[:-1])} is a {json_type(parent)}, not an object or a list")
        return parent


def _add(target: _Target, doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = target.parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(target.list_index(parent, last, tokens[:-1], insert=True), value)
    return doc


def _remove(target: _Target, doc: Any, tokens: list[str]) -> Any:
    """Removes and returns the value at tokens."""
    if not tokens:
        raise target.error("the whole document cannot be removed")
    parent = target.parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise target.error(f'{_show(tokens[:-1])} has no member "{last[:40]}"')
        return parent.pop(last)
    return parent.pop(target.list_index(parent, last, tokens[:-1]))


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


def apply_operation(doc: Any, op: Any, index: int) -> Any:
    """Apply one operation to `doc` IN PLACE and return the document (a new object only
    when the operation replaces the whole document, path "").

    Raises PatchError naming the operation (`index` is 0-based; the message counts
    from 1), its path and the reason. After an error `doc` may be partly changed
    (a move that removed its value but could not place it): apply to a working copy
    and drop it on error, as `apply_patch` does.
    """
    name = check_operation(op, index)
    target = _Target(index, name, op["path"])
    tokens = target.tokens(op["path"])
    if name == "add":
        return _add(target, doc, tokens, clone(op["value"]))
    if name == "remove":
        _remove(target, doc, tokens)
        return doc
    if name == "replace":
        if not tokens:
            return clone(op["value"])
        parent = target.parent(doc, tokens)
        last = tokens[-1]
        if isinstance(parent, dict):
            if last not in parent:
                raise target.error(f'{_show(tokens[:-1])} has no member "{last[:40]}" to replace (use add)')
            parent[last] = clone(op["value"])
        else:
            parent[target.list_index(parent, last, tokens[:-1])] = clone(op["value"])
        return doc
    if name == "test":
        actual = target.value_at(doc, tokens)
        if not json_equal(actual, op["value"]):
            raise target.error(f"the value at {_show(tokens)} is {_preview(actual)}, not {_preview(op['value'])}")
        return doc
    source = target.tokens(op["from"], "from")
    if name == "copy":
        return _add(target, doc, tokens, clone(target.value_at(doc, source)))
    # move
    if tokens[: len(source)] == source and len(tokens) > len(source):
        raise target.error(f"{_show(source)} cannot be moved into its own child {_show(tokens)}")
    target.value_at(doc, source)  # the source must exist before anything changes
    if tokens == source:
        return doc
    value = _remove(target, doc, source)
    return _add(target, doc, tokens, value)


def apply_patch(doc: Any, ops: list[Any]) -> Any:
    """All operations applied to a copy of `doc`, or PatchError for the first that
    fails; `doc` itself is never changed."""
    if not isinstance(ops, list):
        raise PatchError(0, None, f"a patch must be a JSON array of operations, not a JSON {json_type(ops)}")
    result = clone(doc)
    for index, op in enumerate(ops):
        result = apply_operation(result, op, index)
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
    """

    def __init__(self, original: dict[str, Any], max_bytes: int = MAX_SCENARIO_BYTES) -> None:
        self.original = original
        self.working: Any = clone(original)
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
        words = describe_operation(op, self.working)
        self.working = apply_operation(self.working, op, index)
        self.count += 1
        if op["op"] != "test":  # a test changes nothing: not a change to list
            self.changes.append({"op": op["op"], "path": op["path"], "text": words})
        return index, op

    def finish(self, removals: set[str] | frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The end of the block: the array must be complete and the result a valid
        modification of the original (agent.scenario.validate_modified). An empty
        array is valid: the original comes back with no changes."""
        self.reader.close()
        return validate_modified(self.original, self.working, removals), self.changes
