"""Format detection and text extraction, on real files built at run time and hostile ones."""

from __future__ import annotations

import codecs
import io
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.extract import DocFormat, ExtractedDoc, ExtractLimits, detect_format, extract_text
from tests.support.documents import (
    HTML,
    MARKDOWN,
    PNG_BYTES,
    MiB,
    binary_bytes,
    build_docx,
    build_pdf,
    encrypt_pdf,
    lying_zip_docx,
    zip_bomb_docx,
)

UNPROCESSABLE = IngestionErrorCode.UNPROCESSABLE
UNSUPPORTED = IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE

PDF_PAGES = [["Hello World (first page)", "Second line of page one."], ["Page two text."]]
DOCX_BLOCKS: list[tuple[int | None, str]] = [
    (0, "Annual Report"),
    (None, "Opening words."),
    (1, "Results"),
    (2, "Revenue"),
    (None, "Revenue grew."),
    (None, "Costs fell."),
    (1, "Outlook"),
    (None, "Bright."),
]


def sections(doc: ExtractedDoc) -> list[tuple[tuple[str, ...], str]]:
    return [(s.heading_path, s.text) for s in doc.sections]


def assert_offsets(doc: ExtractedDoc) -> None:
    for section in doc.sections:
        assert doc.text[section.start : section.start + len(section.text)] == section.text


@contextmanager
def bounded(max_seconds: float = 2.0, max_bytes: int = 32 * MiB) -> Iterator[None]:
    """The block must finish quickly and allocate little (Python allocations, traced)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < max_seconds, f"took {elapsed:.2f} s"
    assert peak < max_bytes, f"peak {peak / MiB:.1f} MiB"


def expect_error(
    code: IngestionErrorCode, call: Callable[[], object], match: str | None = None
) -> None:
    with pytest.raises(IngestionError, match=match) as info:
        call()
    assert info.value.code is code


# Detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "expected"),
    [
        ("notes.txt", "text/plain", b"hello", DocFormat.TXT),
        ("README.md", "text/plain", b"# hi", DocFormat.MD),
        ("README.markdown", None, b"# hi", DocFormat.MD),
        (None, "text/markdown; charset=utf-8", b"# hi", DocFormat.MD),
        ("page.HTML", "application/octet-stream", b"<p>hi</p>", DocFormat.HTML),
        ("upload", None, b"  <!DOCTYPE html><p>hi</p>", DocFormat.HTML),
        (None, None, b"just words", DocFormat.TXT),
        ("C:\\Users\\me\\doc.txt", None, b"windows path", DocFormat.TXT),
        ("data.log", "text/plain", b"a log line", DocFormat.TXT),
    ],
)
def test_detects_text_formats(
    filename: str | None, content_type: str | None, data: bytes, expected: DocFormat
) -> None:
    assert detect_format(filename, content_type, data) is expected


def test_detects_pdf_and_docx_by_their_bytes_whatever_the_name() -> None:
    pdf = build_pdf(PDF_PAGES)
    document = build_docx(DOCX_BLOCKS)
    assert detect_format("report.pdf", "application/pdf", pdf) is DocFormat.PDF
    assert detect_format("report.txt", "text/plain", pdf) is DocFormat.PDF
    assert detect_format(None, None, pdf) is DocFormat.PDF
    assert detect_format("report.docx", "application/octet-stream", document) is DocFormat.DOCX
    assert detect_format("upload", None, document) is DocFormat.DOCX


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "code", "match"),
    [
        ("empty.txt", "text/plain", b"", UNPROCESSABLE, "empty"),
        ("binary.txt", "text/plain", binary_bytes(), UNPROCESSABLE, "binary data"),
        ("image.txt", None, PNG_BYTES, UNPROCESSABLE, "PNG image"),
        ("page.html", None, binary_bytes(), UNPROCESSABLE, "binary data"),
        ("fake.pdf", "application/pdf", b"just text", UNPROCESSABLE, "not a valid PDF"),
        ("fake.docx", None, b"just text", UNPROCESSABLE, "not a valid DOCX"),
        ("broken.docx", None, b"PK\x03\x04broken", UNPROCESSABLE, "not a valid DOCX"),
        ("locked.docx", None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), UNPROCESSABLE,
         "encrypted"),
        ("old.doc", None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), UNSUPPORTED, "legacy"),
        ("image.png", "image/png", PNG_BYTES, UNSUPPORTED, "png"),
        ("sheet.csv", "text/csv", b"a,b\n1,2", UNSUPPORTED, "csv"),
        ("program", "application/x-executable", b"\x7fELF", UNSUPPORTED, "executable"),
        (None, None, binary_bytes(), UNSUPPORTED, "binary"),
    ],
)  # fmt: skip
def test_refuses_what_it_cannot_read(
    filename: str | None,
    content_type: str | None,
    data: bytes,
    code: IngestionErrorCode,
    match: str,
) -> None:
    expect_error(code, lambda: detect_format(filename, content_type, data), match)


def test_a_zip_that_is_not_a_word_document() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    data = buffer.getvalue()
    expect_error(UNPROCESSABLE, lambda: detect_format("sheet.docx", None, data), "not a valid")
    expect_error(UNPROCESSABLE, lambda: detect_format("notes.txt", None, data), "zip archive")
    expect_error(UNSUPPORTED, lambda: detect_format("files.zip", None, data), "zip")
    expect_error(UNPROCESSABLE, lambda: extract_text(data, DocFormat.DOCX), "not a Word")


# Plain text ---------------------------------------------------------------------------------


def test_txt_decodes_boms_and_legacy_charsets_and_drops_control_characters() -> None:
    text = "Zoë's café\r\nsecond line\x00\x07 of a text with a stray NUL and BEL in it"
    assert extract_text(text.encode("utf-8"), DocFormat.TXT).text == (
        "Zoë's café\nsecond line of a text with a stray NUL and BEL in it"
    )
    assert extract_text(codecs.BOM_UTF8 + "bom ünïcode".encode(), DocFormat.TXT).text == (
        "bom ünïcode"
    )
    utf16 = codecs.BOM_UTF16_LE + "wide text ✓".encode("utf-16-le")
    assert detect_format("wide.txt", None, utf16) is DocFormat.TXT
    assert extract_text(utf16, DocFormat.TXT).text == "wide text ✓"
    latin = "Ça coûte 5 € à Zürich, naïve".encode("cp1252")
    assert extract_text(latin, DocFormat.TXT).text == "Ça coûte 5 € à Zürich, naïve"
    decomposed = "cafe\u0301"  # NFC makes it one character
    assert extract_text(decomposed.encode(), DocFormat.TXT).text == "caf\u00e9"


def test_txt_with_nothing_in_it_or_binary_is_unprocessable() -> None:
    expect_error(UNPROCESSABLE, lambda: extract_text(b" \n\t\n", DocFormat.TXT), "no extractable")
    expect_error(UNPROCESSABLE, lambda: extract_text(binary_bytes(), DocFormat.TXT), "binary")
    # Text first, binary after: every part of a file is judged, not only its start.
    mixed = b"a text header\n" * 100 + bytes(200_000)
    expect_error(UNPROCESSABLE, lambda: extract_text(mixed, DocFormat.TXT), "binary")


def test_text_limit() -> None:
    limits = ExtractLimits(max_text_chars=100)
    expect_error(
        UNPROCESSABLE, lambda: extract_text(b"word " * 100, DocFormat.TXT, limits), "longer"
    )


# Markdown -----------------------------------------------------------------------------------


def test_markdown_headings_become_sections() -> None:
    doc = extract_text(MARKDOWN.encode(), DocFormat.MD)
    assert doc.title == "The Handbook"
    assert sections(doc) == [
        ((), "Preamble before any heading."),
        (
            ("Guide", "Install"),
            "Guide\n\nInstall\n\nRun the installer. Then restart.\n\n```sh\n"
            "# not a heading: a shell comment in a code fence\nmake install\n```",
        ),
        (("Guide", "Use"), "Use\n\nOpen the app."),
        (("Guide", "Setext Heading"), "Setext Heading\n\nUnder the setext heading."),
        (("Guide", "Setext Heading", "Deep"), "Deep\n\n#hashtag is not a heading."),
    ]
    assert "author" not in doc.text  # front matter is metadata
    assert_offsets(doc)


def test_markdown_sibling_headings_without_text_keep_their_own_section() -> None:
    doc = extract_text(b"# A\n# B\ntext\n## C", DocFormat.MD)
    assert sections(doc) == [(("A",), "A"), (("B",), "B\n\ntext"), (("B", "C"), "C")]


# HTML ---------------------------------------------------------------------------------------


def test_html_main_content_with_headings() -> None:
    doc = extract_text(HTML.encode(), DocFormat.HTML)
    assert doc.title == "The Page"
    assert sections(doc) == [
        (("Main & Title",), "Main & Title\n\nFirst paragraph spread over lines."),
        (
            ("Main & Title", "Details"),
            "Details\n\nCafé <b> text\nafter a break\n\none\n\ntwo\n\n"
            "Name | Value\na | 1\n\n  keep   spacing\n  here",
        ),
    ]
    # The table and the preformatted block are kept whole by the chunker.
    details = doc.sections[1]
    whole = [details.text[a:b] for a, b in details.keep_whole]
    assert whole == ["Name | Value\na | 1", "  keep   spacing\n  here"]
    for hidden in ("Menu", "color: red", "do not index", "enable javascript", "vector text"):
        assert hidden not in doc.text
    assert_offsets(doc)


def test_html_declared_charset_and_broken_markup() -> None:
    latin = '<meta charset="iso-8859-1"><h1>Résumé</h1><p>naïve <b>bold'.encode("latin-1")
    doc = extract_text(latin, DocFormat.HTML)
    assert sections(doc) == [(("Résumé",), "Résumé\n\nnaïve bold")]
    expect_error(
        UNPROCESSABLE,
        lambda: extract_text(b"<script>never closed <p>text</p>", DocFormat.HTML),
        "no extractable",
    )


def test_html_deep_nesting_is_harmless() -> None:
    deep = b"<div>" * 200 + b"deep text" + b"</div>" * 200
    assert extract_text(deep, DocFormat.HTML).text == "deep text"
    # Past the parser's nesting limit (about 250 levels) nothing is read: refused, quickly.
    hostile = b"<div>" * 20_000 + b"deep text" + b"</div>" * 20_000
    with bounded(max_seconds=5, max_bytes=64 * MiB):
        expect_error(UNPROCESSABLE, lambda: extract_text(hostile, DocFormat.HTML), "no extract")


# PDF ----------------------------------------------------------------------------------------


def test_pdf_text_per_page() -> None:
    doc = extract_text(build_pdf(PDF_PAGES, title="Quarterly"), DocFormat.PDF)
    assert doc.page_count == 2
    assert doc.title == "Quarterly"
    assert [(s.page, s.text) for s in doc.sections] == [
        (1, "Hello World (first page)\nSecond line of page one."),
        (2, "Page two text."),
    ]
    assert_offsets(doc)


def test_pdf_restricted_only_by_an_owner_password_is_read() -> None:
    pdf = encrypt_pdf(build_pdf(PDF_PAGES), user_password="")
    assert extract_text(pdf, DocFormat.PDF).sections[1].text == "Page two text."


def test_encrypted_pdf_is_unprocessable() -> None:
    pdf = encrypt_pdf(build_pdf(PDF_PAGES), user_password="secret")
    assert detect_format("secret.pdf", None, pdf) is DocFormat.PDF
    with bounded():
        expect_error(UNPROCESSABLE, lambda: extract_text(pdf, DocFormat.PDF), "encrypted")


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.6, 0.95])
def test_broken_pdf_is_unprocessable(keep: float) -> None:
    pdf = build_pdf(PDF_PAGES)
    truncated = pdf[: int(len(pdf) * keep)]
    with bounded():
        expect_error(UNPROCESSABLE, lambda: extract_text(truncated, DocFormat.PDF))


def test_pdf_garbage_after_header_is_unprocessable() -> None:
    garbage = b"%PDF-1.7\n" + binary_bytes(20_000)
    assert detect_format("x.pdf", None, garbage) is DocFormat.PDF
    with bounded():
        expect_error(UNPROCESSABLE, lambda: extract_text(garbage, DocFormat.PDF))


def test_pdf_compression_bomb_is_refused_and_costs_the_service_nothing() -> None:
    # 0.6 MB of PDF whose page inflates to 600 MB, read under a 300 MB limit.
    bomb = build_pdf([["Boom."]], padding_bytes=600 * MiB)
    assert len(bomb) < 2 * MiB
    limits = ExtractLimits(max_pdf_memory_bytes=300 * MiB)
    with bounded(max_seconds=30, max_bytes=64 * MiB):
        expect_error(UNPROCESSABLE, lambda: extract_text(bomb, DocFormat.PDF, limits), "limits")
    # The same file within the limit is read.
    small = build_pdf([["Small."]], padding_bytes=10 * MiB)
    assert extract_text(small, DocFormat.PDF, limits).text == "Small."


def test_pdf_that_takes_too_long_is_refused() -> None:
    # No reader starts in a millisecond: the time limit ends it.
    limits = ExtractLimits(max_pdf_seconds=0.001)
    pdf = build_pdf(PDF_PAGES)
    expect_error(UNPROCESSABLE, lambda: extract_text(pdf, DocFormat.PDF, limits), "seconds")


def test_pdf_without_text_and_over_the_page_limit() -> None:
    expect_error(UNPROCESSABLE, lambda: extract_text(build_pdf([[], []]), DocFormat.PDF), "OCR")
    expect_error(
        UNPROCESSABLE,
        lambda: extract_text(build_pdf(PDF_PAGES), DocFormat.PDF, ExtractLimits(max_pages=1)),
        "2 pages",
    )


# DOCX ---------------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_tables() -> None:
    data = build_docx(DOCX_BLOCKS, title="FY report", table=[["Item", "Cost"], ["Rent", "10"]])
    doc = extract_text(data, DocFormat.DOCX)
    assert doc.title == "FY report"
    assert sections(doc) == [
        (("Annual Report",), "Annual Report\n\nOpening words."),
        (
            ("Annual Report", "Results", "Revenue"),
            "Results\n\nRevenue\n\nRevenue grew.\n\nCosts fell.",
        ),
        (("Annual Report", "Outlook"), "Outlook\n\nBright.\n\nItem | Cost\nRent | 10"),
    ]
    assert_offsets(doc)


def test_docx_zip_bomb_is_refused_before_parsing() -> None:
    bomb = zip_bomb_docx(200 * MiB)
    assert len(bomb) < 2 * MiB
    assert detect_format("bomb.docx", None, bomb) is DocFormat.DOCX
    with bounded(max_seconds=1, max_bytes=8 * MiB):
        expect_error(UNPROCESSABLE, lambda: extract_text(bomb, DocFormat.DOCX), "expands")


def test_docx_bomb_under_the_size_limit_is_refused_by_its_ratio() -> None:
    bomb = zip_bomb_docx(20 * MiB)
    with bounded(max_seconds=1, max_bytes=8 * MiB):
        expect_error(UNPROCESSABLE, lambda: extract_text(bomb, DocFormat.DOCX), "suspiciously")


def test_docx_member_lying_about_its_size_is_refused_without_inflating_it() -> None:
    crafted = lying_zip_docx(real_bytes=64 * MiB, declared_bytes=1000)
    with zipfile.ZipFile(io.BytesIO(crafted)) as archive:  # zipfile itself is fooled
        assert sum(info.file_size for info in archive.infolist()) < 1 * MiB
    with bounded(max_seconds=1, max_bytes=8 * MiB):
        expect_error(UNPROCESSABLE, lambda: extract_text(crafted, DocFormat.DOCX), "declared")


def test_docx_with_too_many_parts() -> None:
    data = build_docx(DOCX_BLOCKS)
    expect_error(
        UNPROCESSABLE,
        lambda: extract_text(data, DocFormat.DOCX, ExtractLimits(max_docx_members=3)),
        "parts",
    )


def test_damaged_docx_is_unprocessable() -> None:
    data = build_docx(DOCX_BLOCKS)
    expect_error(UNPROCESSABLE, lambda: extract_text(data[: len(data) // 2], DocFormat.DOCX))
    # A valid zip whose document XML is broken: the parser's error does not escape.
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "word/document.xml":
                body = body[: len(body) // 2]
            target.writestr(info, body)
    broken = buffer.getvalue()
    assert detect_format("broken.docx", None, broken) is DocFormat.DOCX
    expect_error(UNPROCESSABLE, lambda: extract_text(broken, DocFormat.DOCX), "damaged")


def test_docx_without_text() -> None:
    expect_error(
        UNPROCESSABLE, lambda: extract_text(build_docx([]), DocFormat.DOCX), "no extractable"
    )
