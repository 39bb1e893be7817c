"""PDF, read by PDFium (pypdfium2) in a process of its own: a section per page.

PDFium, Chrome's PDF engine, was chosen over pypdf by measuring on real PDFs
(docs/libraries.md): its text keeps the words apart where pypdf ran them together, and it
reads pages ten to twenty times faster. It is a C++ library, and a hostile PDF (a page
that inflates to gigabytes, a file that makes it loop) must not take the service with it:
each PDF is read by `python -m ingestion.pdfium_reader` under a memory limit and a time
limit, about 0.1 s of start-up per file. Running it apart also keeps PDFium, which must
never be called from two threads at once, out of the service's threads.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

from ingestion.extract.document import DocFormat, ExtractedDoc, ExtractLimits, unprocessable
from ingestion.extract.structure import Part, make_doc
from ingestion.extract.text import clean

log = logging.getLogger(__name__)

_REFUSALS = {
    "encrypted": "the PDF is encrypted (password-protected)",
    "damaged": "the PDF is damaged or unreadable",
}


def _read(data: bytes, limits: ExtractLimits) -> dict[str, Any]:
    """What the reader process answers; UNPROCESSABLE when it fails or runs out of time
    or memory."""
    command = [
        sys.executable, "-m", "ingestion.pdfium_reader",
        str(limits.max_pages), str(limits.max_text_chars), str(limits.max_pdf_memory_bytes),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, input=data, capture_output=True, timeout=limits.max_pdf_seconds, check=False
        )
    except subprocess.TimeoutExpired:
        log.warning("PDF reader out of time after %ss", limits.max_pdf_seconds)
        raise unprocessable(
            f"the PDF could not be read in {limits.max_pdf_seconds:g} seconds"
        ) from None
    if done.returncode != 0:
        log.warning(
            "PDF reader failed code=%d error=%s",
            done.returncode,
            done.stderr.decode(errors="replace")[-500:],
        )
        raise unprocessable(
            "the PDF could not be read within the limits (damaged, or it expands too far)"
        )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def extract_pdf(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    if b"%PDF-" not in data[:1024]:
        raise unprocessable("the file is not a valid PDF: it has no PDF header")
    answer = _read(data, limits)
    refused = answer.get("refused")
    if refused == "pages":
        raise unprocessable(f"the PDF has {answer['pages']} pages; the limit is {limits.max_pages}")
    if refused == "text":
        raise unprocessable(
            f"the document's text is longer than {limits.max_text_chars} characters"
        )
    if refused:
        raise unprocessable(_REFUSALS[refused])
    pages: list[str] = answer["pages"]
    parts = [Part((), clean(text), page=number) for number, text in enumerate(pages, start=1)]
    return make_doc(
        DocFormat.PDF,
        parts,
        limits,
        title=answer.get("title"),
        page_count=len(pages),
        warnings=[f"page {n}: text could not be extracted" for n in answer["unreadable"]],
        empty_message="the PDF has no extractable text (a scanned PDF needs OCR, "
        "which is not supported)",
    )
