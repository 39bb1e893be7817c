"""Markdown, parsed by markdown-it-py (CommonMark, with tables): ATX and setext headings
become sections; every other top-level block keeps its source text, and code blocks and
tables are marked to be kept whole in one chunk."""

from __future__ import annotations

import re
from collections.abc import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ingestion.extract.document import DocFormat, ExtractedDoc, ExtractLimits
from ingestion.extract.structure import Block, Heading, make_doc, sections_from_blocks
from ingestion.extract.text import clean, decode_text

_PARSER = MarkdownIt("commonmark").enable("table")
#: Blocks that lose their meaning when cut: kept whole in one chunk when they fit.
_WHOLE = frozenset({"fence", "code_block", "table_open"})
_FRONT_MATTER_TITLE = re.compile(r"title:\s*(.+?)\s*", re.IGNORECASE)


def _front_matter(lines: list[str]) -> tuple[list[str], str | None]:
    """Lines without YAML front matter, and the title it gives.

    Front matter is metadata, not text (and its closing `---` is no setext heading).
    """
    if not lines or lines[0].strip() != "---":
        return lines, None
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title: str | None = None
            for line in lines[1:end]:
                match = _FRONT_MATTER_TITLE.fullmatch(line)
                if match:
                    title = match.group(1).strip("'\"")
            return lines[end + 1 :], title
    return lines, None


def _plain(inline: Token) -> str:
    """The text of an inline token without its markup (`**a** b` → `a b`)."""
    parts = []
    for child in inline.children or ():
        if child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.content:
            parts.append(child.content)
    return " ".join("".join(parts).split())


def _blocks(lines: list[str]) -> Iterator[Heading | Block]:
    """The document's top-level blocks, in order."""
    tokens = _PARSER.parse("\n".join(lines))
    for index, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        if token.type == "heading_open":
            text = _plain(tokens[index + 1])
            if text:
                yield Heading(int(token.tag[1:]), text)
            continue
        start, end = token.map
        yield Block("\n".join(lines[start:end]), whole=token.type in _WHOLE)


def extract_md(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    lines, title = _front_matter(clean(decode_text(data)).split("\n"))
    parts = sections_from_blocks(_blocks(lines))
    return make_doc(DocFormat.MD, parts, limits, title=title)
