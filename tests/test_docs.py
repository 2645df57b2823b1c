"""The documentation stands alone in a clone: every relative link of the README and docs/
resolves to a file of the repository, and nothing outside docs/ sends readers to `../shared/`,
which only the project's workspace has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# .ci/run looks for the workspace's leak guard on purpose, and runs without it in a clone; this
# file names what it looks for.
OUTSIDE_ALLOWED = {".ci/run", "tests/test_docs.py"}
# [text](target) and [text]: target; images too. Code spans are removed before matching.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _documents() -> list[Path]:
    """README.md, docs/*.md and every other Markdown file in the repository (bench/, packaging/)."""
    tracked = [ROOT / name for name in _tracked() if name.endswith(".md")]
    return sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(p for p in tracked if p.is_file())})


def _relative_links(text: str) -> list[str]:
    links = [a or b for a, b in _LINK.findall(_CODE.sub("", text))]
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:|#", link)]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def test_docs_exist() -> None:
    names = {str(p.relative_to(ROOT)) for p in _documents()}
    assert names >= {"README.md", "docs/architecture.md", "docs/api.md"}


def test_relative_links_resolve() -> None:
    broken = []
    for doc in _documents():
        for link in _relative_links(doc.read_text()):
            target = (doc.parent / link.split("#", 1)[0]).resolve()
            if not target.exists() or not target.is_relative_to(ROOT):
                broken.append(f"{doc.relative_to(ROOT)}: {link}")
    assert not broken, "links to nothing in the repository: " + ", ".join(broken)


def test_link_finder_sees_links() -> None:
    """The check above would pass on any text if the pattern found no link at all."""
    text = "see [a](docs/a.md), [b](../b.md#x \"t\"), `[c](not/a/link)`, [d](https://x.org) and\n[e]: e.md\n"
    assert _relative_links(text) == ["docs/a.md", "../b.md#x", "e.md"]


def test_nothing_points_to_the_workspace() -> None:
    found = []
    for name in _tracked():
        if name in OUTSIDE_ALLOWED:
            continue
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree
        if b"../shared/" in path.read_bytes():
            found.append(name)
    assert not found, "these files point to ../shared/, which a clone does not have: " + ", ".join(found)
