"""Every relative link in README.md and docs/*.md (and the READMEs of notebooks/, sample_data/
and benchmarks/) names a file that exists and, where it names an anchor, a heading of that
file, by GitHub's rules: the heading's text in lower case, spaces to '-', punctuation dropped
except '-' and '_', and '-1', '-2'... after repeats."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import ROOT

PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *(ROOT / folder / "README.md" for folder in ("notebooks", "sample_data", "benchmarks")),
]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"(?<!\!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (markup such as backticks counts as punctuation)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(prose(page.read_text(encoding="utf-8")))
    return [target for target in targets if not EXTERNAL.match(target)]


def test_github_slugs_follow_githubs_rules() -> None:
    assert github_slug("Overlapping exports: `id:` and the ledger") == (
        "overlapping-exports-id-and-the-ledger"
    )
    assert github_slug("`backfill plan`") == "backfill-plan"
    assert github_slug("Network: rate × latency, 5000/s") == "network-rate--latency-5000s"
    assert github_slug("snake_case and kebab-case") == "snake_case-and-kebab-case"


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n## Results\n```sh\n# not a heading\n```\n## Results\n")
    assert anchors_of(page) == {"title", "results", "results-1"}


def test_links_in_code_are_not_links() -> None:
    text = "see [a](a.md) and `[b](b.md)`\n```md\n[c](c.md)\n```\n![img](i.png)"
    assert LINK.findall(prose(text)) == ["a.md"]


def test_the_pages_have_relative_links() -> None:
    assert sum(len(relative_links(page)) for page in PAGES) >= 30


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_and_anchor(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert broken == []
