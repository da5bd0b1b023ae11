"""The repository's own documents are the contract its code and tests cite."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "docs" / "LIFECYCLE.md"


def tracked_text_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = {}
    for name in names:
        if name.endswith((".py", ".md", ".yaml", ".toml", ".json", ".txt")) or name == "Makefile":
            found[name] = (ROOT / name).read_text(encoding="utf-8")
    return found


def test_every_lifecycle_rule_cited_exists():
    rules = {int(n) for n in re.findall(r"^\s*(\d+)\. \*\*", LIFECYCLE.read_text(), re.MULTILINE)}
    assert rules == set(range(1, len(rules) + 1))
    cited = {
        (name, int(n))
        for name, text in tracked_text_files().items()
        for n in re.findall(r"LIFECYCLE\.md rule (\d+)", text.replace("\n", " "))
    }
    assert cited, "nothing cites the lifecycle rules"
    assert {(name, n) for name, n in cited if n not in rules} == set()


def test_nothing_cites_a_document_outside_the_repository():
    outside = re.compile(r"DESIGN(\.md)? ?(§|rule|section)|\.\./shared|(?<![\w.])§\d")
    assert {name for name, text in tracked_text_files().items() if outside.search(text)} == set()
