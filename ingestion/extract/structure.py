"""From a format's blocks to a document: headings, text blocks and blocks to keep whole
(code and tables) become sections, each under its heading path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingestion.extract.document import (
    DocFormat,
    ExtractedDoc,
    ExtractLimits,
    Section,
    unprocessable,
)

#: Longer "headings" are kept in the text but shortened in the metadata.
MAX_HEADING_CHARS = 200
BLOCK_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Block:
    """A run of text; `whole` for a code block or table, which chunks keep whole."""

    text: str
    whole: bool = False


@dataclass(frozen=True)
class Part:
    """A section in the making: heading path, text, page, spans to keep whole."""

    heading_path: tuple[str, ...]
    text: str
    page: int | None = None
    keep_whole: tuple[tuple[int, int], ...] = ()


def _part(heading_path: tuple[str, ...], blocks: list[Block]) -> Part:
    """The blocks' texts joined by a blank line, with where the whole ones are."""
    text = ""
    spans: list[tuple[int, int]] = []
    for block in blocks:
        if text:
            text += BLOCK_SEPARATOR
        if block.whole:
            spans.append((len(text), len(text) + len(block.text)))
        text += block.text
    return Part(heading_path, text, keep_whole=tuple(spans))


def short_heading(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_HEADING_CHARS:
        return text
    return text[: MAX_HEADING_CHARS - 1] + "…"


def sections_from_blocks(blocks: Iterable[Heading | Block]) -> list[Part]:
    """Group text blocks under the headings before them.

    A heading with no text of its own before a deeper heading (`# Guide` right before
    `## Install`) does not make a chunk of its own: its line is carried into the child
    section, whose heading path names it anyway.
    """
    parts: list[Part] = []
    stack: list[tuple[int, str]] = []
    heading: str | None = None
    carried: list[Block] = []
    body: list[Block] = []

    def path() -> tuple[str, ...]:
        return tuple(short_heading(text) for _, text in stack)

    for item in [*blocks, None]:
        if isinstance(item, Block):
            text = item.text.strip("\n") if item.whole else item.text.strip()
            if text.strip():
                body.append(Block(text, item.whole))
            continue
        prefix = [*carried, *([Block(heading)] if heading is not None else [])]
        carried = []
        if body:
            parts.append(_part(path(), [*prefix, *body]))
        elif prefix:
            if item is not None and stack and item.level > stack[-1][0]:
                carried = prefix
            else:
                parts.append(_part(path(), prefix))
        if item is None:
            break
        while stack and stack[-1][0] >= item.level:
            stack.pop()
        stack.append((item.level, item.text))
        heading = item.text
        body = []
    return parts


def make_doc(
    fmt: DocFormat,
    parts: Iterable[Part],
    limits: ExtractLimits,
    *,
    title: str | None = None,
    page_count: int | None = None,
    warnings: Iterable[str] = (),
    empty_message: str = "the file has no extractable text",
) -> ExtractedDoc:
    """The document of `parts`: empty ones dropped, offsets set, limits checked."""
    sections: list[Section] = []
    offset = 0
    for part in parts:
        lead = len(part.text) - len(part.text.lstrip())
        text = part.text.strip()
        if not text:
            continue
        if sections:
            offset += len(BLOCK_SEPARATOR)
        spans = tuple(
            (max(0, a - lead), min(len(text), b - lead))
            for a, b in part.keep_whole
            if b - lead > 0 and a - lead < len(text)
        )
        sections.append(Section(part.heading_path, text, offset, part.page, spans))
        offset += len(text)
        if offset > limits.max_text_chars:
            raise unprocessable(
                f"the document's text is longer than {limits.max_text_chars} characters"
            )
    if not sections:
        raise unprocessable(empty_message)
    title = " ".join(title.split()) if title else None
    return ExtractedDoc(
        format=fmt,
        text=BLOCK_SEPARATOR.join(s.text for s in sections),
        sections=tuple(sections),
        title=title or None,
        page_count=page_count,
        warnings=tuple(warnings),
    )
