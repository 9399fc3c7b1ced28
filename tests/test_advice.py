"""Advice names only commands and flags that exist: every `glacierwatch CMD --flag` suggested in
the package's messages, its README, docs and deploy files parses with the command line itself."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    *sorted((ROOT / "catalog").rglob("*.py")), *sorted((ROOT / "pipeline").rglob("*.py")),
    *sorted((ROOT / "pipeline").rglob("*.md")), ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
    *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix in ("", ".md", ".yaml", ".yml", ".sh")),
]
# `glacierwatch CMD` followed by flags (up to the end of the quoted string, sentence or line), or
# a bare `glacierwatch: --flag` / `glacierwatch --flag` that names no command.
SUGGESTION = re.compile(r"glacierwatch(?::\s*|\s+)(?P<cmd>[a-z][a-z0-9-]*\b)?(?P<rest>[^\"'`\n;)(]*)")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _commands() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    assert hasattr(group, "commands"), group  # a click group (the CLI may subclass it)
    shared = {opt for p in group.params for opt in (*p.opts, *p.secondary_opts)}  # e.g. --debug, before the command
    return {name: {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"} | shared
            for name, cmd in group.commands.items()}


def suggestions() -> list[tuple[str, str, list[str]]]:
    """(where, command or "", flags) of every suggested command line with at least one flag or in backticks."""
    found = []
    for path in SOURCES:
        text = path.read_text(errors="replace").replace("\\\n", " ")  # shell line continuations
        for match in SUGGESTION.finditer(text):
            rest = match["rest"]
            flags = FLAG.findall(rest.split(" # ")[0].split(", ")[0])
            quoted = text[max(match.start() - 1, 0)] == "`"
            if flags or (quoted and match["cmd"]):
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", match["cmd"] or "", flags))
    return found


def test_every_suggested_command_and_flag_exists():
    commands = _commands()
    found = suggestions()
    assert len(found) >= 10  # README, deploy files and messages suggest commands
    wrong = []
    for where, cmd, flags in found:
        if cmd and cmd not in commands:
            wrong.append(f"{where}: no command {cmd!r}")
            continue
        known = commands[cmd] if cmd else set().union(*commands.values())
        wrong += [f"{where}: glacierwatch {cmd} has no {flag}" for flag in flags if flag not in known]
    assert wrong == []


def test_the_checker_catches_a_wrong_flag(tmp_path, monkeypatch):
    fake = tmp_path / "advice.py"
    fake.write_text('msg = f"run glacierwatch update --redo-year {year} first"\nother = "glacierwatch: --redo-year 2020"\n')
    monkeypatch.setattr(__import__(__name__), "SOURCES", [fake])
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert suggestions() == [("advice.py:1", "update", ["--redo-year"]), ("advice.py:2", "", ["--redo-year"])]
    assert "--redo-year" not in _commands()["update"] and "--year" in _commands()["update"]
