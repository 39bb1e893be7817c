"""Text out of uploaded documents: what format a file is, and its text with its headings.

One module per format: plain text (`text`), markdown (`markdown`, on markdown-it-py), HTML
(`html`, on lxml with trafilatura deciding what is main content), PDF (`pdf`, on PDFium)
and DOCX (`word`, on python-docx); `detect` tells the format, `structure` turns blocks and
headings into sections, `document` holds the types. Uploads are untrusted, so everything
here expects hostile input: a binary named `.txt`, a zip bomb named `.docx`, an encrypted
or truncated PDF. Each of those ends in an `IngestionError` (UNPROCESSABLE, or
UNSUPPORTED_MEDIA_TYPE for a type we do not ingest); no library exception escapes, and no
input makes us hold much more memory than the limits in `ExtractLimits`.

Everything here is blocking and pure (bytes in, values out): callers run it in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ingestion.errors import IngestionError
from ingestion.extract.detect import detect_format
from ingestion.extract.document import (
    DocFormat,
    ExtractedDoc,
    ExtractLimits,
    Section,
    unprocessable,
)
from ingestion.extract.html import extract_html
from ingestion.extract.markdown import extract_md
from ingestion.extract.pdf import extract_pdf
from ingestion.extract.text import extract_txt
from ingestion.extract.word import extract_docx

__all__ = [
    "DocFormat",
    "ExtractLimits",
    "ExtractedDoc",
    "Section",
    "detect_format",
    "extract_text",
]

log = logging.getLogger(__name__)

_EXTRACTORS: dict[DocFormat, Callable[[bytes, ExtractLimits], ExtractedDoc]] = {
    DocFormat.TXT: extract_txt,
    DocFormat.MD: extract_md,
    DocFormat.HTML: extract_html,
    DocFormat.PDF: extract_pdf,
    DocFormat.DOCX: extract_docx,
}


def extract_text(data: bytes, fmt: DocFormat, limits: ExtractLimits | None = None) -> ExtractedDoc:
    """A document's text and sections (headings kept as metadata).

    Raises IngestionError UNPROCESSABLE when the file is corrupt, encrypted, hostile (over
    a limit), binary where text was expected, or has no text at all.
    """
    limits = limits or ExtractLimits()
    try:
        return _EXTRACTORS[fmt](data, limits)
    except IngestionError:
        raise
    except Exception as exc:
        # A parser failing on a hostile or damaged file: never a 500. RecursionError and
        # MemoryError are Exceptions too.
        log.warning("could not extract %s: %s: %s", fmt.value, type(exc).__name__, exc)
        log.debug("extraction failure", exc_info=True)
        raise unprocessable(f"the {fmt.value} file is damaged or unreadable") from exc
