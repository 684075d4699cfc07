"""Every citation of the documentation resolves, and the README stays a front page.

Code and docs cite a section in one form, ``docs/<page>.md#<anchor>`` (or ``README.md#<anchor>``),
where the anchor is GitHub's slug of a Markdown heading of that page: renaming a heading
without its citations fails here. Relative links of the README and docs/ must reach a file
(and, with an anchor, a heading of it).
"""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300
SKIPPED_DIRS = {".venv", ".local", "build", ".git", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
SCANNED_SUFFIXES = {".py", ".yaml", ".yml", ".md"}
# A cited page: docs/<page>.md or a README.md (the repository's or bench/'s), then #anchor.
CITATION = re.compile(r"(?<![\w/.-])((?:docs/[\w-]+|(?:[\w-]+/)?README)\.md)#([\w-]+)")
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Slugs of every heading of a Markdown file, outside fenced code, numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def scanned_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        if path.suffix in SCANNED_SUFFIXES or path.name == "Makefile":
            files.append(path)
    return sorted(files)


def citations() -> list[tuple[str, str, str]]:
    """(where, cited file, anchor) for every citation in the repository's text files."""
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for match in CITATION.finditer(line):
                found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1), match.group(2)))
    return found


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every link of a page that is not a URL, outside fenced code."""
    links = []
    fenced = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in MARKDOWN_LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                links.append((number, target))
    return links


def test_the_scan_finds_citations_in_code_and_docs() -> None:
    places = {where.split(":")[0] for where, _, _ in citations()}
    assert any(place.endswith(".py") for place in places)
    assert any(place.endswith(".yaml") for place in places)
    assert "README.md" in places


def test_every_citation_names_an_existing_page_and_one_of_its_headings() -> None:
    broken = []
    for where, cited, anchor in citations():
        page = ROOT / cited
        if not page.is_file():
            broken.append(f"{where}: {cited} does not exist")
        elif anchor not in anchors(page):
            broken.append(f"{where}: {cited} has no heading whose anchor is #{anchor}")
    assert not broken, "\n".join(broken)


def test_no_code_cites_the_readme_by_a_section_name() -> None:
    """The old forms (README "Timeouts and retries", README, Identity) hide from the check above."""
    old = re.compile(
        r"\bREADME\b(?!\.md)(?:'s)?(?:\s*[,:(]?\s*(?:[\"“*]|[A-Z][a-z])|\s*$)"  # README "Data model", README, Identity
        r"|\bREADME\.md\)?\s*,\s*[\"“]"  # bench/README.md, "a section"
    )
    found = []
    for path in scanned_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if old.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "cite docs/<page>.md#<anchor> instead:\n" + "\n".join(found)


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move depth to docs/"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    broken = []
    for number, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"line {number}: {target} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"line {number}: {target} names no heading of {linked.name}")
    assert not broken, "\n".join(broken)


def test_the_slug_is_githubs() -> None:
    assert slug("How long a token outlives its `exp`") == "how-long-a-token-outlives-its-exp"
    assert slug("MiniStack and AWS: differences we know") == "ministack-and-aws-differences-we-know"
    assert slug("Expiry and completion: `settle_due_jobs`") == "expiry-and-completion-settle_due_jobs"
    assert slug("Partial batch responses, safe by construction") == "partial-batch-responses-safe-by-construction"
    assert slug("The `chalice deploy` path") == "the-chalice-deploy-path"
