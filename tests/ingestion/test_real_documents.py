"""Real documentation, as Debian packages install it (tests/fixtures/documents): the chunks
of an HTML page hold its main content and none of its navigation, sidebar or footer, and no
chunk cuts a code block or table that fits in one.

What is navigation and what is main content is read from each page's own markup (Sphinx's
`related`, `sphinxsidebar` and `footer` blocks; its `role="main"` body), not from the
extractor; code blocks are read from the markup and the markdown source the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import lxml.html
import pytest
from tokenizers import Tokenizer

from embedpipe.bundled_model import tokenizer_path
from ingestion.chunking import Chunk, Chunker
from ingestion.extract import DocFormat, ExtractedDoc, extract_text
from tests.support.processes import REPO

FIXTURES = REPO / "tests" / "fixtures" / "documents"
SPHINX_PAGES = ["python-bisect.html", "python-heapq.html"]
MARKDOWN_FILES = ["nodejs-BUILDING.md", "libcbor-README.md"]
#: Small chunks press hardest on the blocks to keep whole; the default size too.
CHUNK_SIZES = [(96, 16), (200, 40)]
BOILERPLATE = ".//div[@class='related'] | .//div[@class='sphinxsidebar'] | .//div[@class='footer']"


@functools.cache
def tokenizer() -> Tokenizer:
    """The bundled model's tokenizer, untruncated (its tokenizer.json truncates at 128)."""
    loaded = Tokenizer.from_file(str(tokenizer_path()))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def flat(text: str) -> str:
    return " ".join(text.split())


def chunks_of(doc: ExtractedDoc, size: int, overlap: int) -> list[Chunk]:
    return Chunker(tokenizer(), size, overlap).chunk(doc, "doc")


def page(name: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring((FIXTURES / name).read_bytes())


def boilerplate_lines(name: str) -> list[str]:
    """Lines of the page's navigation bars, sidebar and footer that its main content does
    not also hold (the sidebar repeats the page's title, for one)."""
    root = page(name)
    main = flat(root.xpath(".//div[@role='main']")[0].text_content())
    found = []
    for element in root.xpath(BOILERPLATE):
        for line in element.text_content().split("\n"):
            words = flat(line)
            if len(words.split()) >= 2 and words not in main:
                found.append(words)
    return found


def code_blocks_of_page(name: str) -> list[str]:
    main = page(name).xpath(".//div[@role='main']")[0]
    return [pre.text_content().strip("\n") for pre in main.iter("pre")]


def code_blocks_of_markdown(name: str) -> list[str]:
    """Fenced code blocks, fences included, as the source has them."""
    lines = (FIXTURES / name).read_text().split("\n")
    blocks, start = [], None
    for number, line in enumerate(lines):
        if line.startswith("```"):
            if start is None:
                start = number
            else:
                blocks.append("\n".join(lines[start : number + 1]))
                start = None
    return blocks


def cut_blocks(doc: ExtractedDoc, size: int, overlap: int, blocks: list[str]) -> list[str]:
    """The blocks that fit in a chunk of `size` tokens but that no chunk holds whole, or
    that a chunk holds a part of: each block is found in the document's text by its lines."""
    chunks = chunks_of(doc, size, overlap)
    cut = []
    for block in blocks:
        wanted = "\n".join(line.rstrip() for line in block.split("\n"))
        start = doc.text.find(wanted)
        assert start >= 0, f"block not in the text: {wanted[:80]!r}"
        end = start + len(wanted)
        if len(tokenizer().encode(wanted, add_special_tokens=False).ids) > size:
            continue  # too long for any chunk: it must be cut
        spans = [(c.metadata["char_start"], c.metadata["char_end"]) for c in chunks]
        whole = any(a <= start and end <= b for a, b in spans)
        partial = any(a < end and start < b and not (a <= start and end <= b) for a, b in spans)
        if not whole or partial:
            cut.append(wanted)
    return cut


@pytest.mark.parametrize("name", SPHINX_PAGES)
def test_html_chunks_hold_the_main_content_and_no_navigation_or_footer(name: str) -> None:
    doc = extract_text((FIXTURES / name).read_bytes(), DocFormat.HTML)
    chunks = chunks_of(doc, 200, 40)
    text = flat(" ".join(c.text for c in chunks))
    boilerplate = boilerplate_lines(name)
    assert len(boilerplate) >= 10  # "Previous topic", "Report a Bug", "© Copyright ...", ...
    leaked = [line for line in boilerplate if line in text]
    assert not leaked, leaked
    paragraphs = [
        flat(p.text_content())
        for p in page(name).xpath(".//div[@role='main']//p")
        if len(p.text_content().split()) >= 8
    ]
    found = [p for p in paragraphs if p in text]
    assert len(found) >= 0.9 * len(paragraphs), set(paragraphs) - set(found)
    headings = {path[-1] for path in (c.metadata["headings"] for c in chunks) if path}
    assert {"Examples"} <= headings or {"Basic Examples"} <= headings, headings


@pytest.mark.parametrize(("size", "overlap"), CHUNK_SIZES)
@pytest.mark.parametrize("name", SPHINX_PAGES)
def test_html_code_blocks_are_not_cut(name: str, size: int, overlap: int) -> None:
    doc = extract_text((FIXTURES / name).read_bytes(), DocFormat.HTML)
    blocks = code_blocks_of_page(name)
    assert len(blocks) >= 3
    assert not cut_blocks(doc, size, overlap, blocks)


@pytest.mark.parametrize(("size", "overlap"), CHUNK_SIZES)
@pytest.mark.parametrize("name", MARKDOWN_FILES)
def test_markdown_code_blocks_are_not_cut(name: str, size: int, overlap: int) -> None:
    doc = extract_text((FIXTURES / name).read_bytes(), DocFormat.MD)
    blocks = code_blocks_of_markdown(name)
    assert len(blocks) >= 5
    assert not cut_blocks(doc, size, overlap, blocks)


def test_without_the_blocks_to_keep_whole_the_same_files_would_be_cut() -> None:
    """The check above can fail: the same chunker, told of no block to keep whole, cuts
    code blocks of these very files."""
    cut = 0
    for name, fmt in [
        *((n, DocFormat.HTML) for n in SPHINX_PAGES),
        *((n, DocFormat.MD) for n in MARKDOWN_FILES),
    ]:
        doc = extract_text((FIXTURES / name).read_bytes(), fmt)
        plain = dataclasses.replace(
            doc, sections=tuple(dataclasses.replace(s, keep_whole=()) for s in doc.sections)
        )
        blocks = (
            code_blocks_of_page(name) if fmt is DocFormat.HTML else code_blocks_of_markdown(name)
        )
        cut += len(cut_blocks(plain, 96, 16, blocks))
    assert cut >= 3


def test_markdown_headings_of_a_real_file_become_the_chunks_headings() -> None:
    doc = extract_text((FIXTURES / "nodejs-BUILDING.md").read_bytes(), DocFormat.MD)
    source_headings, fenced = set(), False
    for line in (FIXTURES / "nodejs-BUILDING.md").read_text().split("\n"):
        fenced ^= line.startswith("```")  # a "# comment" in a code block is no heading
        if not fenced and re.match(r"#{1,6} ", line):
            source_headings.add(re.sub(r"^#+\s*", "", line).replace("`", "").strip())
    found = {heading for section in doc.sections for heading in section.heading_path}
    assert len(source_headings) >= 20
    assert found == source_headings, source_headings ^ found


def test_fixture_files_are_what_the_readme_lists() -> None:
    listed = set(re.findall(r"`([\w.-]+\.(?:html|md))`", (FIXTURES / "README.md").read_text()))
    on_disk = {p.name for p in FIXTURES.iterdir() if p.name != "README.md"}
    assert listed == on_disk == set(SPHINX_PAGES) | set(MARKDOWN_FILES)
