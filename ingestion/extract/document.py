"""What extraction gives: a document's text in sections, and the errors it may end in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ingestion.errors import IngestionError, IngestionErrorCode

MiB = 1024 * 1024


class DocFormat(StrEnum):
    """The formats we extract text from."""

    TXT = "txt"
    MD = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"


@dataclass(frozen=True)
class ExtractLimits:
    """How much an upload may make us read; past any limit the document is UNPROCESSABLE."""

    #: Pages of one PDF.
    max_pages: int = 2000
    #: Characters of extracted text of one document (about 10,000 dense pages).
    max_text_chars: int = 20_000_000
    #: What a DOCX (a zip) may expand to in total. python-docx loads every part into
    #: memory, and lxml needs several times an XML part's size, so this bounds our memory.
    max_docx_uncompressed_bytes: int = 50 * MiB
    #: Expansion of one zip member (and of the whole zip). Word's XML compresses about
    #: 5-20x and images about 1x; a zip bomb of zeros compresses about 1000x.
    max_docx_compression_ratio: float = 100.0
    #: Members of one DOCX zip.
    max_docx_members: int = 5000
    #: Memory (address space) and time of the process that reads one PDF: a page that
    #: inflates to gigabytes, or a file that makes the reader loop, is refused.
    max_pdf_memory_bytes: int = 1024 * MiB
    max_pdf_seconds: float = 60.0


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path, e.g. ("Guide", "Install") for `## Install`.

    The section's own heading line is the first line of `text` (no markup), so no text is
    lost; `heading_path` repeats the headings as metadata for every chunk of the section.
    """

    heading_path: tuple[str, ...]
    text: str
    #: Where `text` starts in `ExtractedDoc.text`.
    start: int = 0
    #: 1-based page number for PDFs, whose sections are pages.
    page: int | None = None
    #: (start, end) offsets in `text` of blocks to keep whole in one chunk when they fit:
    #: code blocks and tables.
    keep_whole: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ExtractedDoc:
    """A document's text, split into sections that chunks never span."""

    format: DocFormat
    #: The sections' texts joined by a blank line.
    text: str
    sections: tuple[Section, ...]
    #: From <title>, markdown front matter, DOCX core properties or PDF metadata.
    title: str | None = None
    page_count: int | None = None
    #: What was skipped but did not fail the document (e.g. an unreadable PDF page).
    warnings: tuple[str, ...] = ()


def unprocessable(message: str) -> IngestionError:
    """A supported type with nothing we can read in it."""
    return IngestionError(IngestionErrorCode.UNPROCESSABLE, message, field="file")


def unsupported(message: str) -> IngestionError:
    """A type we do not ingest."""
    return IngestionError(IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE, message, field="file")
