"""The documentation keeps itself true: each check reads the docs and the code and fails when
they disagree. Every check is a function that returns the problems it found, run once on the
real files and once on a copy broken on purpose, so none of them can pass by finding nothing.

- docs/token-path.md: each listed function's line count against the syntax tree and the stated
  total; and the bars the doc states: the chat token's path at most 360 lines, no
  `# type: ignore` in a listed function;
- relative links in every *.md file and the file references in docs/openapi.json resolve,
  anchors included;
- the README: at most 250 lines, the two commands within its first 40, a layout map naming
  every top-level folder and package;
- docs/protocol.md's error table: every code and message of agent/errors.py, and every code
  the service answers with;
- docs/operations.md's settings table: every setting, with agent/config.py's default;
- no issue numbers and no absolute paths of a development machine in the tree.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

TOKEN_PATH_LIMIT = 360
LINE_TOLERANCE = 3  # a doc's figure may trail the code by this many lines
README_MAX_LINES = 250
FIRST_COMMAND_WITHIN = 40


def read(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


def repo_files() -> list[str]:
    """Every file of the tree that git knows or would add: tracked, or new and not ignored."""
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return sorted({line for line in done.stdout.splitlines() if line and (ROOT / line).is_file()})


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in `text` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]*", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def section(text: str, heading: str) -> str:
    """The text under the `## heading` (any level), up to the next heading of that level or higher."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert match, f"no heading {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


# -- docs/token-path.md ---------------------------------------------------------------------------

FUNCTION_CELL = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def find_function(path: str, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function `qualname` (Class.method, or outer.inner for a function defined inside
    another) in the module at `path`; None when it is not there."""
    node: ast.AST = ast.parse(read(path))
    for part in qualname.split("."):
        found = None
        pending = list(ast.iter_child_nodes(node))
        while pending:  # the definitions directly in `node`'s body, also inside if/try/with blocks
            child = pending.pop(0)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name == part:
                    found = child
                    break
                continue
            pending.extend(ast.iter_child_nodes(child))
        if found is None:
            return None
        node = found
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def function_lines(path: str, qualname: str) -> tuple[int, str] | None:
    """(its length in lines, from the `def` line to its last line; its source), or None."""
    node = find_function(path, qualname)
    if node is None:
        return None
    lines = read(path).splitlines()[node.lineno - 1 : node.end_lineno]
    return len(lines), "\n".join(lines)


def listed_functions(text: str) -> list[tuple[str, str, int]]:
    """(path, qualname, the doc's line count) of every table row naming a function."""
    out = []
    for cells in table_rows(text):
        for i, cell in enumerate(cells):
            match = FUNCTION_CELL.fullmatch(cell)
            if match and i + 1 < len(cells) and cells[i + 1].isdigit():
                out.append((match.group(1), match.group(2), int(cells[i + 1])))
    return out


def token_path_problems(text: str) -> list[str]:
    problems = []
    listed = listed_functions(text)
    if not listed:
        return ["no function is listed"]
    for path, name, figure in listed:
        counted = function_lines(path, name)
        if counted is None:
            problems.append(f"{path}:{name} is listed but not in the code")
            continue
        lines, source = counted
        if abs(lines - figure) > LINE_TOLERANCE:
            problems.append(f"{path}:{name} is {lines} lines; the doc says {figure}")
    chat = listed_functions(section(text, "The chat token's path"))
    stated = re.search(r"\*\*Total: (\d+) lines in (\d+) functions\.\*\*", section(text, "The chat token's path"))
    if not chat or stated is None:
        return problems + ["the chat token's path has no table or no stated total (**Total: N lines in M functions.**)"]
    if (int(stated.group(1)), int(stated.group(2))) != (sum(figure for _, _, figure in chat), len(chat)):
        problems.append(f"the stated total, {stated.group(1)} lines in {stated.group(2)} functions, is not the table's "
                        f"{sum(f for _, _, f in chat)} in {len(chat)}")
    return problems


TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore")


def type_ignores(text: str) -> list[str]:
    """The listed functions that silence the type checker somewhere in their lines."""
    out = []
    for path, name, _ in listed_functions(text):
        counted = function_lines(path, name)
        if counted is not None and TYPE_IGNORE.search(counted[1]):
            out.append(f"{path}:{name}")
    return out


def chat_path_lines(text: str) -> int:
    """The chat token's path in lines, counted from the syntax tree (not the doc's figures)."""
    total = 0
    for path, name, _ in listed_functions(section(text, "The chat token's path")):
        counted = function_lines(path, name)
        assert counted is not None, f"{path}:{name}"
        total += counted[0]
    return total


def test_token_path_figures_match_the_code() -> None:
    assert token_path_problems(read("docs/token-path.md")) == []


def test_token_path_check_catches_a_wrong_figure_a_missing_function_and_a_wrong_total() -> None:
    text = read("docs/token-path.md")
    path, name, figure = listed_functions(section(text, "The chat token's path"))[0]
    cell = f"`{path}:{name}` | {figure} |"
    assert cell in text
    off = text.replace(cell, f"`{path}:{name}` | {figure + LINE_TOLERANCE + 1} |", 1)
    assert any("the doc says" in p for p in token_path_problems(off))
    assert any("stated total" in p for p in token_path_problems(off))
    gone = text.replace(cell, f"`{path}:{name}_gone` | {figure} |", 1)
    assert any("not in the code" in p for p in token_path_problems(gone))


def test_no_listed_function_has_a_type_ignore() -> None:
    assert type_ignores(read("docs/token-path.md")) == []


def test_the_type_ignore_check_sees_one() -> None:
    assert TYPE_IGNORE.search("        return x.y  # type: ignore[attr-defined]")
    assert TYPE_IGNORE.search("x = 1  #type:ignore")
    assert not TYPE_IGNORE.search("x = 1  # the type is ignored here")


def test_the_chat_token_path_is_at_most_360_lines() -> None:
    total = chat_path_lines(read("docs/token-path.md"))
    assert total <= TOKEN_PATH_LIMIT, f"the chat token's path is {total} lines, over {TOKEN_PATH_LIMIT}"


def test_function_lines_counts_from_the_def_line_to_the_last(tmp_path: Path) -> None:
    counted = function_lines("runs/frames.py", "frame")
    node = find_function("runs/frames.py", "frame")
    assert counted is not None and node is not None and counted[0] == node.end_lineno - node.lineno + 1
    assert counted[1].lstrip().startswith("def frame(")
    inner = find_function("web/gate.py", "Gate.__call__.send_with_headers")
    assert inner is not None and inner.name == "send_with_headers"


# -- links ----------------------------------------------------------------------------------------

INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+.*)?$", re.M)
# A file of this tree named in an OpenAPI description ("docs/limits.md", "tests/test_openapi.py").
TREE_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)+[\w.-]+\.(?:md|json|py|js|html|css|txt))\b")


def without_code(text: str) -> str:
    """Markdown without fenced blocks and code spans: a link shown as code is not a link."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*#*\s*$", re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def link_problems(files: dict[str, str]) -> list[str]:
    """Relative links in the markdown `files` ({path: text}) that lead nowhere: a missing file,
    or an anchor that is no heading of its target."""
    problems = []
    for path, text in files.items():
        here = (ROOT / path).parent
        prose = without_code(text)
        for target in INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            resolved = (here / file_part).resolve() if file_part else ROOT / path
            if not resolved.exists():
                problems.append(f"{path}: {target} does not exist")
                continue
            if anchor and resolved.suffix == ".md":
                other = files.get(str(resolved.relative_to(ROOT))) if resolved.is_relative_to(ROOT) else None
                if anchor not in anchors(other if other is not None else resolved.read_text(encoding="utf-8")):
                    problems.append(f"{path}: {target}: no heading with that anchor")
    return problems


def openapi_problems(document: dict) -> list[str]:
    """Files of the tree that the OpenAPI document's descriptions name but that do not exist."""
    problems = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "description" and isinstance(value, str):
                    for reference in TREE_REFERENCE.findall(value):
                        if not (ROOT / reference).exists():
                            problems.append(f"docs/openapi.json: {reference} does not exist")
                    for target in INLINE_LINK.findall(value):
                        if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) and not (ROOT / target.partition("#")[0]).exists():
                            problems.append(f"docs/openapi.json: {target} does not exist")
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return problems


def markdown_files() -> dict[str, str]:
    return {path: read(path) for path in repo_files() if path.endswith(".md")}


def test_relative_links_in_every_markdown_file_resolve() -> None:
    files = markdown_files()
    assert "README.md" in files and "docs/protocol.md" in files
    assert link_problems(files) == []


def test_file_references_in_openapi_descriptions_resolve() -> None:
    assert openapi_problems(json.loads(read("docs/openapi.json"))) == []


def test_the_link_checks_catch_a_dead_file_and_a_dead_anchor() -> None:
    files = {"README.md": read("README.md"), "docs/operations.md": read("docs/operations.md")}
    assert link_problems(files) == []
    broken = dict(files, **{"README.md": files["README.md"] + "\n[gone](docs/limits.md) [x](docs/operations.md#no-such-heading)\n"})
    problems = link_problems(broken)
    assert any("docs/limits.md does not exist" in p for p in problems)
    assert any("no-such-heading" in p for p in problems)
    assert link_problems({"README.md": "`[shown as code](nowhere.md)`\n"}) == []
    assert openapi_problems({"info": {"description": "Limits: docs/limits.md."}}) == ["docs/openapi.json: docs/limits.md does not exist"]
    assert openapi_problems({"info": {"description": "See docs/operations.md and tests/test_openapi.py."}}) == []


def test_slugs_are_githubs() -> None:
    assert slug("Shared state: REDIS_URL") == "shared-state-redis_url"
    assert slug("The daily token budget: reserve and settle") == "the-daily-token-budget-reserve-and-settle"
    assert slug("Resume: runs outlive their connection") == "resume-runs-outlive-their-connection"
    assert slug("The demo's path") == "the-demos-path"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


# -- the README ----------------------------------------------------------------------------------

COMMAND_LINE = re.compile(r"^ {4}(make|python3?|uvicorn|curl|pip)\b")


def readme_problems(text: str) -> list[str]:
    problems = []
    lines = text.splitlines()
    if len(lines) > README_MAX_LINES:
        problems.append(f"the README is {len(lines)} lines, over {README_MAX_LINES}")
    commands = [(n, line.strip()) for n, line in enumerate(lines, 1) if COMMAND_LINE.match(line)]
    if not commands or commands[0][0] > FIRST_COMMAND_WITHIN:
        problems.append(f"the first command is not within the first {FIRST_COMMAND_WITHIN} lines")
    for wanted in ("make run", "make test"):
        if not any(n <= FIRST_COMMAND_WITHIN and command.startswith(wanted) for n, command in commands):
            problems.append(f"`{wanted}` is not within the first {FIRST_COMMAND_WITHIN} lines")
    if not re.search(r"!\[[^\]]+\]\(docs/screenshot\.png\)", text):
        problems.append("the README shows no screenshot (docs/screenshot.png)")
    return problems


def test_readme_is_one_screen_with_the_two_commands_first() -> None:
    assert readme_problems(read("README.md")) == []


def test_readme_check_catches_a_long_readme_and_a_late_command() -> None:
    text = read("README.md")
    assert any("over 250" in p for p in readme_problems(text + "\n" * 300))
    late = "\n".join(["filler"] * 45) + "\n" + text
    assert any("first command" in p for p in readme_problems(late))
    assert any("`make test`" in p for p in readme_problems(text.replace("    make test ", "    make check ")))


def ignored(paths: list[str]) -> set[str]:
    done = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, input="\n".join(paths), capture_output=True, text=True, timeout=30)
    return set(done.stdout.split())


def folders_to_map() -> set[str]:
    """Every top-level folder with Python in it, every package outside the tests and benchmarks
    (upstream/offline/), and the folders that hold no Python but are part of the app or its
    documentation: static/, docs/, bench/, tests/."""
    tops = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    tops = [p for p in tops if p.name not in ignored([p.name for p in tops])]
    wanted = {f"{p.name}/" for p in tops if any(p.rglob("*.py"))} | {"static/", "docs/", "bench/", "tests/"}
    for top in tops:
        if top.name in ("tests", "bench"):
            continue
        for init in top.rglob("__init__.py"):
            package = init.parent.relative_to(ROOT)
            if len(package.parts) > 1 and "__pycache__" not in package.parts:
                wanted.add(f"{package.as_posix()}/")
    return wanted


def layout_map(text: str) -> set[str]:
    return {m.group(1) for cells in table_rows(section(text, "Layout")) if (m := re.fullmatch(r"`([\w./-]+/)`", cells[0]))}


def layout_problems(text: str, wanted: set[str]) -> list[str]:
    named = layout_map(text)
    problems = [f"the layout map does not name {folder}" for folder in sorted(wanted - named)]
    problems += [f"the layout map names {folder}, which does not exist" for folder in sorted(named) if not (ROOT / folder).is_dir()]
    return problems


def test_readme_layout_map_names_every_folder_and_package() -> None:
    wanted = folders_to_map()
    assert {"agent/", "upstream/", "upstream/offline/", "runs/", "web/", "static/", "tests/", "bench/", "docs/"} <= wanted
    assert layout_problems(read("README.md"), wanted) == []


def test_layout_check_catches_a_missing_and_a_stale_folder() -> None:
    text = read("README.md")
    wanted = folders_to_map()
    assert layout_problems(text, wanted | {"newpackage/"}) == ["the layout map does not name newpackage/"]
    stale = text.replace("| `tools/` |", "| `tools/` |\n| `gone/` | nothing |", 1)
    assert "the layout map names gone/, which does not exist" in layout_problems(stale, wanted)


# -- the error table (docs/protocol.md) ------------------------------------------------------------

EXAMPLE_ARGUMENTS = {"retry_after": [7.0, None], "detail": [" (HTTP 503)", ""], "status": [404], "reason": ["it dropped roles", "Expecting value"],
                     "block_begun": [True, False]}


def agent_errors() -> list[tuple[str, str, bool]]:
    """(code, message, retryable) of every error agent/errors.py makes, called with example arguments."""
    from agent import errors

    made = []
    for name, function in inspect.getmembers(errors, inspect.isfunction):
        if function.__module__ != errors.__name__ or name.startswith("_"):
            continue
        parameters = list(inspect.signature(function).parameters)
        calls = [{}] if not parameters else [{p: EXAMPLE_ARGUMENTS[p][i % len(EXAMPLE_ARGUMENTS[p])] for p in parameters}
                                            for i in range(max(len(EXAMPLE_ARGUMENTS[p]) for p in parameters))]
        for arguments in calls:
            error = function(**arguments)
            if isinstance(error, errors.AgentError):
                made.append((error.code, error.message, error.retryable))
    return made


def message_pattern(documented: str) -> re.Pattern[str]:
    """A documented message as a pattern: `<...>` stands for any text (or none)."""
    return re.compile(".*?".join(re.escape(part) for part in re.split(r"<[^>]*>", documented)), re.S)


def error_table_problems(text: str) -> list[str]:
    from web.errors import AGENT_ERROR_STATUS

    rows = [cells for cells in table_rows(section(text, "Errors")) if len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0])]
    documented: dict[str, list[list[str]]] = {}
    for cells in rows:
        documented.setdefault(cells[0].strip("`"), []).append(cells)
    problems = []
    made = agent_errors()
    for code, message, retryable in made:
        mine = documented.get(code)
        if not mine:
            problems.append(f"{code} is not in the error table")
            continue
        if not any(message_pattern(cells[4]).fullmatch(message) for cells in mine):
            problems.append(f"{code}: no row has the message {message!r}")
        for cells in mine:
            if cells[1] != ("yes" if retryable else "no"):
                problems.append(f"{code}: retryable is {retryable}, the table says {cells[1]}")
            if cells[2] != str(AGENT_ERROR_STATUS.get(code, 502)):
                problems.append(f"{code}: the buffered status is {AGENT_ERROR_STATUS.get(code, 502)}, the table says {cells[2]}")
    codes = {code for code, _, _ in made}
    problems += [f"{code} is in the error table but agent/errors.py makes no such error" for code in documented if code not in codes]
    return problems


def service_codes() -> set[str]:
    """Every error code the service answers with: web/metrics.py's list, and every code raised as
    an ApiError or an InvalidRequest in the source."""
    from web.metrics import ERROR_CODES

    codes = set(ERROR_CODES)
    for path in ["app.py", *(str(p.relative_to(ROOT)) for p in (ROOT / "web").glob("*.py")), "agent/request.py",
                 *(str(p.relative_to(ROOT)) for p in (ROOT / "scaleout").glob("*.py"))]:
        source = read(path)
        codes |= set(re.findall(r"ApiError\(\s*\d{3},\s*\"(\w+)\"", source))
        codes |= set(re.findall(r"InvalidRequest\(\s*\"(\w+)\"", source))
        codes |= set(re.findall(r"return \d{3}, \"(\w+)\"", source))
    return codes


def test_protocol_error_table_matches_agent_errors() -> None:
    assert error_table_problems(read("docs/protocol.md")) == []


def test_every_code_the_service_answers_with_is_documented() -> None:
    text = read("docs/protocol.md")
    missing = sorted(code for code in service_codes() if f"`{code}`" not in text)
    assert missing == []


def test_error_table_check_catches_a_changed_message_a_wrong_flag_and_a_stale_code() -> None:
    text = read("docs/protocol.md")
    assert error_table_problems(text) == []
    changed = text.replace("The model server stopped responding. Try again.", "The model server is slow.")
    assert any(p.startswith("upstream_timeout: no row has the message") for p in error_table_problems(changed))
    flag = text.replace("| `context_too_long` | no | 422 |", "| `context_too_long` | yes | 422 |")
    assert any(p.startswith("context_too_long: retryable") for p in error_table_problems(flag))
    stale = text.replace("| `internal` | yes | 500 |", "| `internal_old` | yes | 500 |")
    problems = error_table_problems(stale)
    assert "internal is not in the error table" in problems and any("internal_old" in p for p in problems)


# -- the settings table (docs/operations.md) -------------------------------------------------------


def settings_read_from_env() -> dict[str, str]:
    """{environment variable: Settings field} for every variable `Settings.from_env` reads."""
    tree = ast.parse(read("agent/config.py"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for argument in node.args[:2]:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", argument.value):
                    names.add(argument.value)
    from agent.config import Settings

    fields = {f.name for f in dataclasses.fields(Settings)}
    return {name: name.lower() for name in names if name.lower() in fields}


def default_matches(cell: str, default: object) -> bool:
    match = re.match(r"`([^`]*)`", cell)
    if match is None:
        return cell.startswith("unset") and not default
    value = match.group(1)
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, (int, float)):
        try:
            return float(value) == float(default)
        except ValueError:
            return False
    return value == str(default)


def settings_problems(text: str) -> list[str]:
    from agent.config import Settings

    rows = {cells[0].strip("`"): cells for cells in table_rows(section(text, "Settings")) if cells[0].startswith("`")}
    defaults = Settings()
    problems = []
    for variable, name in sorted(settings_read_from_env().items()):
        cells = rows.get(variable)
        if cells is None:
            problems.append(f"{variable} is not in the settings table")
        elif not default_matches(cells[1], getattr(defaults, name)):
            problems.append(f"{variable}: the default is {getattr(defaults, name)!r}, the table says {cells[1]}")
    return problems


def test_operations_settings_table_has_every_setting_with_its_default() -> None:
    assert len(settings_read_from_env()) >= 30
    assert settings_problems(read("docs/operations.md")) == []


def test_settings_check_catches_a_wrong_default_and_a_missing_setting() -> None:
    text = read("docs/operations.md")
    wrong = re.sub(r"\| `RUN_RETENTION_SECONDS` \| `[^`]+` \|", "| `RUN_RETENTION_SECONDS` | `60` |", text)
    assert any(p.startswith("RUN_RETENTION_SECONDS: the default") for p in settings_problems(wrong))
    gone = "\n".join(line for line in text.splitlines() if not line.startswith("| `BUDGET_FAIL_OPEN` |"))
    assert "BUDGET_FAIL_OPEN is not in the settings table" in settings_problems(gone)


# -- issue numbers and development paths -------------------------------------------------------------

# The word "issue" followed by a number, or a number after "fixes", "closes", "see": references
# to a tracker that a reader of this tree cannot follow.
ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\d+|\b(?:fixes|closes|resolves|see|PR)\s+#\d+", re.I)
# A bare "#12". Not one after a quote or a word character (a CSS colour such as "#444", an
# anchor, "&#39;"), and not one after a noun a user counts things by ("step #1", "goal #3": the
# offline model's phrasings, and the tests of them). Those are the only exceptions.
BARE_NUMBER = re.compile(r"(?<![\w\"'&#/-])#\d{1,4}\b")
COUNTED_NOUN = re.compile(r"\b(?:step|goal|objective|role|item|number)\s+$", re.I)
# A machine's home or work folder: the tree must not depend on where it was checked out. Built
# from parts so that this file does not match itself.
DEVELOPMENT_PATH = re.compile("|".join(re.escape(f"/{name}/") for name in ("work", "home", "root", "Users", "mnt")))
BINARY = (".png", ".jpg", ".jpeg", ".gif", ".ico", ".gguf", ".woff", ".woff2")


def reference_problems(files: dict[str, str]) -> list[str]:
    problems = []
    for path, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            if ISSUE_REFERENCE.search(line):
                problems.append(f"{path}:{number}: an issue number: {line.strip()[:120]}")
            for match in BARE_NUMBER.finditer(line):
                if not COUNTED_NOUN.search(line[: match.start()]):
                    problems.append(f"{path}:{number}: an issue number: {line.strip()[:120]}")
            if DEVELOPMENT_PATH.search(line):
                problems.append(f"{path}:{number}: a development machine's path: {line.strip()[:120]}")
    return problems


def tree_texts() -> dict[str, str]:
    out = {}
    for path in repo_files():
        if path.endswith(BINARY) or "/node_modules/" in f"/{path}":
            continue
        try:
            out[path] = read(path)
        except UnicodeDecodeError:
            continue
    return out


def test_no_issue_numbers_and_no_development_paths_in_the_tree() -> None:
    texts = tree_texts()
    assert len(texts) > 100
    assert reference_problems(texts) == []


def test_reference_check_catches_each_kind_and_lets_the_two_exceptions_pass() -> None:
    home = "/" + "home" + "/dev/scenario-agent"
    issue, fixes, bare = "# see issue " + "12", "x = 1  # fixes " + "#3", "Done (" + "#14)."
    found = reference_problems({"a.py": f"{issue}\n{fixes}\nPATH = '{home}'\n", "b.md": bare + "\n"})
    assert [p.split(":")[1] for p in found] == ["1", "2", "2", "3", "1"]
    assert reference_problems({"c.js": 'color: "#444";\n', "d.py": '"delete step #1", "goal #3", "#2"\n', "e.css": "a { color: #fff; }\n"}) == []
