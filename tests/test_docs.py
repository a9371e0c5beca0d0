"""The docs against the code: every `seqcast` command line shown names a real subcommand and real options, every
relative link and #anchor leads somewhere, every path and module named exists, and the settings are as documented."""

from __future__ import annotations

import argparse
import re
import shlex
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from seqcast.app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); a target has no spaces, and may carry a "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
# words that end a command on a shell line
SEPARATORS = {"&&", "||", ";", "|", "&", ">", ">>", "2>", "2>&1", "<"}


def split_page(text: str) -> tuple[list[str], list[str]]:
    """The page's lines inside fenced code blocks (continuations joined), and its prose lines."""
    code, prose, fenced, pending = [], [], False, ""
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            prose.append(line)
        elif line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            code.append(pending + line)
            pending = ""
    return code, prose


def shell_words(line: str) -> list[str]:
    """A shell line's words, comments dropped; a prompt (`$ `) is not a word."""
    line = re.sub(r"^\s*\$\s+", "", line)
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in an example's output, not a command
        return []


def commands_in_code(line: str) -> list[list[str]]:
    """The argument lists of every `seqcast` (or `.venv/bin/seqcast`) command a shell line runs."""
    found, words, start = [], shell_words(line), True
    for i, word in enumerate(words):
        if word in SEPARATORS:
            start = True
        elif start and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", word):
            continue  # VAR=value before the command
        elif start and (word == "seqcast" or word.endswith("/seqcast")):
            rest = words[i + 1:]
            end = next((j for j, w in enumerate(rest) if w in SEPARATORS), len(rest))
            found.append(rest[:end])
            start = False
        else:
            start = False
    return found


def commands_in_prose(line: str) -> list[list[str]]:
    """The argument lists of every inline-code `seqcast ...` in a prose line: a synopsis such as
    `seqcast run --variant NAME ... \\| --one-step [--jobs N]` counts, its brackets and bars dropped."""
    found = []
    for _, span in INLINE_CODE.findall(line):
        words = re.sub(r"\\?\|", " ", span).replace("[", " ").replace("]", " ").split()
        if words and (words[0] == "seqcast" or words[0].endswith("/seqcast")) and len(words) > 1:
            found.append(words[1:])
    return found


def shown_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments) of every `seqcast` command line in the README and docs/."""
    shown = []
    for page in PAGES:
        code, prose = split_page(page.read_text())
        for line in code:
            shown += [(f"{page.name}: {line.strip()}", args) for args in commands_in_code(line)]
        for line in prose:
            shown += [(f"{page.name}: {' '.join(['seqcast', *args])}", args) for args in commands_in_prose(line)]
    return shown


@cache
def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def problems_with(args: list[str]) -> list[str]:
    """What in one command line the parser does not know: its subcommand, an option, a positional choice."""
    if not args or args[0].startswith("-"):
        return [] if not args or args[0] in ("-h", "--help") else [f"option {args[0]} before a subcommand"]
    commands = subcommands()
    if re.fullmatch(r"<[^>]+>", args[0]):  # `seqcast <command> --help`: a placeholder stands for any
        return []
    if args[0] not in commands:
        return [f"unknown subcommand {args[0]!r}; known: {', '.join(commands)}"]
    sub = commands[args[0]]
    options = {s for a in sub._actions for s in a.option_strings}
    flags = [word.strip("[]").split("=")[0] for word in args[1:] if word.strip("[]").startswith("--")]
    problems = [f"{args[0]}: unknown option {flag}" for flag in flags if flag not in options]
    choices = [a.choices for a in sub._actions if not a.option_strings and a.choices]
    first = next((w for w in args[1:] if not w.startswith("-")), None)
    if choices and first is not None and re.fullmatch(r"[a-z][a-z-]*", first) and first not in choices[0]:
        problems.append(f"{args[0]}: {first!r} is not one of {', '.join(choices[0])}")
    return problems


def test_the_docs_show_commands():
    shown = shown_commands()
    assert len(shown) > 50, "the command lines are no longer found in the docs"
    assert {args[0] for _, args in shown} >= {"run", "sql", "ingest", "predict", "backtest", "serve", "sweep"}


def test_every_command_shown_parses():
    wrong = [f"{where}\n    {problem}" for where, args in shown_commands() for problem in problems_with(args)]
    assert not wrong, "command lines in the docs that the parser refuses:\n" + "\n".join(wrong)


def test_every_option_shows_its_default():
    """The README promises that --help shows each option's default: options that take a value and may be left out
    say what leaving them out means."""
    silent = []
    for name, sub in subcommands().items():
        chosen_in_groups = {a for g in sub._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in sub._actions:
            optional_value = action.option_strings and action.nargs != 0 and not action.required
            if optional_value and action not in chosen_in_groups and "default" not in (action.help or ""):
                silent.append(f"seqcast {name} {action.option_strings[0]}")
    assert not silent, f"options whose --help shows no default: {', '.join(silent)}"


@pytest.mark.parametrize("line, problem", [
    ("seqcast frobnicate --all", "unknown subcommand 'frobnicate'"),
    ("seqcast run --variant linear --no-such-flag 3", "run: unknown option --no-such-flag"),
    ("seqcast sql 'SELECT 1' --format=xml --limit 3", "sql: unknown option --limit"),
    ("seqcast results resync", "results: 'resync' is not one of compact, migrate"),
    ("seqcast champion --dataset-id ds-1 [--margn 2]", "champion: unknown option --margn"),
])
def test_a_wrong_command_is_found(line, problem):
    [args] = commands_in_code(line)
    assert problem in " ".join(problems_with(args))


def test_commands_are_found_where_a_reader_sees_them():
    assert commands_in_code("X=1 .venv/bin/seqcast run --all && seqcast sql 'a | b' # --ignored") == [
        ["run", "--all"], ["sql", "a | b"]]
    assert commands_in_code("seqcast: error: invalid parameters") == []
    assert commands_in_prose("see `seqcast backtest --windows K \\| --refit` and `seqcast-training`") == [
        ["backtest", "--windows", "K", "--refit"]]
    code, prose = split_page("a `seqcast x`\n```bash\nseqcast run \\\n  --all\n```\n")
    assert code == ["seqcast run    --all"] and prose == ["a `seqcast x`"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The #anchors GitHub gives the headings of a page; a repeated heading's anchor gains -1, -2, ..."""
    code_free = split_page(page.read_text())[1]
    seen: dict[str, int] = {}
    found = set()
    for line in code_free:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading[1])
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return frozenset(found)


def links(page: Path) -> list[str]:
    prose = "\n".join(split_page(page.read_text())[1])
    prose = INLINE_CODE.sub("", prose)
    return LINK.findall(prose) + REFERENCE.findall(prose)


def broken(page: Path, target: str) -> str | None:
    """Why a relative link from ``page`` leads nowhere, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...: not ours to check
        return None
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return f"{target}: no file {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else path}"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{target}: no heading with anchor #{anchor} in {destination.name}"
    return None


def test_the_docs_have_links():
    assert sum(len(links(page)) for page in PAGES) > 50


def test_every_relative_link_and_anchor_resolves():
    wrong = [f"{page.name}: {problem}" for page in PAGES for target in links(page)
             if (problem := broken(page, target))]
    assert not wrong, "links in the docs that lead nowhere:\n" + "\n".join(wrong)


def test_anchors_follow_githubs_rules():
    assert slug("4. Forecast") == "4-forecast"
    assert slug("`seqcast run --jobs`: parallel runs without a server") == \
        "seqcast-run---jobs-parallel-runs-without-a-server"
    assert slug("An object store as `SEQCAST_HOME`") == "an-object-store-as-seqcast_home"
    assert slug("Statistical baselines and the competition's scores") == \
        "statistical-baselines-and-the-competitions-scores"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Two words\n\n```\n# not a heading\n```\n[a](page.md#two-words) [b](#not-a-heading) [c](gone.md)")
    assert [broken(page, t) for t in links(page)] == [
        None, "#not-a-heading: no heading with anchor #not-a-heading in page.md", "gone.md: no file gone.md"]


def documented_defaults() -> dict[str, str]:
    """docs/configuration.md's table: variable -> its default, as written."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    return {name: default.strip("` ") for name, default in
            re.findall(r"^\| `(SEQCAST_[A-Z_]+)` \| (.+?) \|", page, re.MULTILINE)}


def test_configuration_lists_every_setting():
    from seqcast.config.settings import PREFIX, Settings

    missing = {PREFIX + name.upper() for name in Settings.model_fields} - set(documented_defaults())
    assert not missing, f"docs/configuration.md lacks {', '.join(sorted(missing))}"


def test_the_documented_object_store_defaults_are_the_settings(monkeypatch):
    from seqcast.config.settings import load_settings

    monkeypatch.delenv("SEQCAST_CACHE", raising=False)
    monkeypatch.setenv("SEQCAST_HOME", "s3://forecasts/team-a")
    settings = load_settings()
    defaults = documented_defaults()

    def documented(name: str) -> Path:
        path = defaults[name].strip("` ")
        return Path(path.replace("<bucket>/<prefix>", "forecasts/team-a")).expanduser().resolve()

    assert documented("SEQCAST_CACHE") == settings.home_path


# the checkout's own folders: a path in inline code that starts with one of them names a file or folder there
REPO_FOLDERS = ("app", "flows", "tasks", "storage", "deployments", "seqcast", "bench", "tests", "docs")
PACKAGE_DIRS = {"seqcast.app": "app", "seqcast.flows": "flows", "seqcast.tasks": "tasks", "seqcast.storage": "storage",
                "seqcast.deployments": "deployments"}


def code_spans() -> list[tuple[str, str]]:
    """(page, text) of every inline code span in the prose of the README and docs/."""
    return [(page.name, span) for page in PAGES for line in split_page(page.read_text())[1]
            for _, span in INLINE_CODE.findall(line)]


def module_file(dotted: str) -> Path | None:
    """The source file of a dotted module name under seqcast, by the package-dir mapping, or None."""
    parts = dotted.split(".")
    top = ".".join(parts[:2])
    path = ROOT / PACKAGE_DIRS[top] / Path(*parts[2:]) if top in PACKAGE_DIRS else ROOT / Path(*parts)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def names_in(path: Path) -> set[str]:
    """The top-level names a module defines or lists in __all__."""
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__all__":
                        names |= set(ast.literal_eval(node.value))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    return names


def dotted_problem(dotted: str) -> str | None:
    """Why a dotted name under seqcast names no module, or no function/class/constant of its module; or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a module, then the names after it
        path = module_file(".".join(parts[:cut]))
        if path is not None:
            rest = parts[cut:]
            if rest and rest[0] not in names_in(path):
                return f"{dotted}: no {rest[0]} in {path.relative_to(ROOT)}"
            return None
    return f"{dotted}: no such module"  # not under seqcast at all


def span_problem(span: str) -> str | None:
    """Why an inline code span that names a path of the checkout or a module under seqcast names nothing; or None."""
    if re.fullmatch(rf"(?:{'|'.join(REPO_FOLDERS)})/[\w./-]*", span):
        return None if (ROOT / span).exists() else f"{span}: no such file or folder"
    if re.fullmatch(r"seqcast(?:\.[a-z_][a-z_0-9]*)+", span):
        return dotted_problem(span)
    return None


def test_every_path_and_module_named_exists():
    named = [(page, span) for page, span in code_spans() if re.match(r"(?:\w+/|seqcast\.)", span)]
    assert len(named) > 50
    wrong = [f"{page}: {problem}" for page, span in named if (problem := span_problem(span))]
    assert not wrong, "paths and modules in the docs that do not exist:\n" + "\n".join(wrong)


def test_a_missing_path_or_module_is_found():
    assert dotted_problem("seqcast.storage.home.current_store") is None
    assert dotted_problem("seqcast.models.layers") is None
    assert dotted_problem("seqcast.storage.models.load_model") == "seqcast.storage.models.load_model: no load_model " \
        "in storage/models.py"
    assert dotted_problem("seqcast.forecast") is None  # in seqcast's __all__
    assert span_problem("flows/execution.py") is None and span_problem("docs/examples/") is None
    assert span_problem("tasks/runtime.py") == "tasks/runtime.py: no such file or folder"
    assert dotted_problem("seqcast.metrics") == "seqcast.metrics: no metrics in seqcast/__init__.py"
