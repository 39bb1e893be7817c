"""`python -m ingestion.pdfium_reader MAX_PAGES MAX_CHARS MAX_BYTES`: the text of the PDF on stdin,
as JSON on stdout, read by PDFium in a process of its own.

A PDF can hold a compression bomb (a page whose content stream inflates to gigabytes) or
make PDFium loop or crash; in its own process, under a memory limit the process sets for
itself before PDFium is loaded and a time limit its parent keeps, such a file costs one
short-lived process, never the service. ingestion/extract/pdf.py runs it.

Answers `{"pages": [text, ...], "title": str | null, "unreadable": [page numbers]}`, or
`{"refused": "encrypted" | "damaged" | "pages" | "text", "pages": count}` ("text": more than
MAX_CHARS characters).
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def read(data: bytes, max_pages: int, max_chars: int) -> dict[str, Any]:
    import pypdfium2 as pdfium  # after the memory limit is in place
    import pypdfium2.raw as pdfium_raw

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        encrypted = getattr(exc, "err_code", None) == pdfium_raw.FPDF_ERR_PASSWORD
        return {"refused": "encrypted" if encrypted else "damaged", "pages": 0}
    count = len(document)
    if count > max_pages:
        return {"refused": "pages", "pages": count}
    pages: list[str] = []
    unreadable: list[int] = []
    total = 0
    for index in range(count):
        try:
            page = document[index]
            pages.append(page.get_textpage().get_text_bounded())
        except pdfium.PdfiumError:
            pages.append("")
            unreadable.append(index + 1)
        total += len(pages[-1])
        if total > max_chars:
            return {"refused": "text", "pages": count}
    title = document.get_metadata_dict(skip_empty=True).get("Title")
    return {"pages": pages, "title": title, "unreadable": unreadable}


def main(argv: list[str]) -> int:
    max_pages, max_chars, max_bytes = (int(arg) for arg in argv)
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    answer = read(sys.stdin.buffer.read(), max_pages, max_chars)
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
