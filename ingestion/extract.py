"""Text out of uploaded documents: what format a file is, and its text with its headings.

Supported: plain text, markdown, HTML, PDF (pypdf) and DOCX (python-docx). Uploads are
untrusted, so every function here expects hostile input: a binary named `.txt`, a zip bomb
named `.docx`, an encrypted or truncated PDF. Each of those ends in an `IngestionError`
(UNPROCESSABLE, or UNSUPPORTED_MEDIA_TYPE for a type we do not ingest); no library exception
escapes, and no input makes us hold much more memory than the limits in `ExtractLimits`.

Everything here is blocking and pure (bytes in, values out): the caller runs it in a thread
or, to also bound CPU time on adversarial PDFs, in a process it can kill.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import PurePosixPath

import docx
import pypdf
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.paragraph import Paragraph

from ingestion.errors import IngestionError, IngestionErrorCode

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class DocFormat(StrEnum):
    """The formats we extract text from."""

    TXT = "txt"
    MD = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"


TEXT_FORMATS = frozenset({DocFormat.TXT, DocFormat.MD, DocFormat.HTML})


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


def _unprocessable(message: str) -> IngestionError:
    return IngestionError(IngestionErrorCode.UNPROCESSABLE, message, field="file")


def _unsupported(message: str) -> IngestionError:
    return IngestionError(IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE, message, field="file")


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------

_EXTENSIONS = {
    "txt": DocFormat.TXT,
    "text": DocFormat.TXT,
    "md": DocFormat.MD,
    "markdown": DocFormat.MD,
    "mdown": DocFormat.MD,
    "mkd": DocFormat.MD,
    "htm": DocFormat.HTML,
    "html": DocFormat.HTML,
    "xhtml": DocFormat.HTML,
    "pdf": DocFormat.PDF,
    "docx": DocFormat.DOCX,
}

_MEDIA_TYPES = {
    "text/plain": DocFormat.TXT,
    "text/markdown": DocFormat.MD,
    "text/x-markdown": DocFormat.MD,
    "text/html": DocFormat.HTML,
    "application/xhtml+xml": DocFormat.HTML,
    "application/pdf": DocFormat.PDF,
    "application/x-pdf": DocFormat.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DocFormat.DOCX,
}

#: Content types that say nothing about the content; clients send them for any file.
_GENERIC_MEDIA_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)

_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: Unmistakable signatures of binary formats, for a clear message when one is named `.txt`.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b\x08", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x00asm", "a WebAssembly module"),
    (_OLE2_MAGIC, "a legacy Office file"),
    (_ZIP_MAGIC, "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
)


def detect_format(filename: str | None, content_type: str | None, data: bytes) -> DocFormat:
    """The format of an upload, from its name and content type, checked against its bytes.

    PDF and DOCX are recognised by their bytes whatever the name says (a PDF named `.txt`
    is still read as a PDF). Among the text formats, which the bytes cannot tell apart, the
    extension decides, then the content type; with neither, HTML is sniffed, else plain text.

    Raises IngestionError: UNPROCESSABLE for an empty file, binary data claimed to be text,
    or a file that is not what its name claims (a "PDF" without a PDF header, a "DOCX" that
    is not a Word zip); UNSUPPORTED_MEDIA_TYPE for a type we do not ingest.
    """
    if not data:
        raise _unprocessable("the file is empty")
    ext = _extension(filename)
    media = _media_type(content_type)
    claimed = _EXTENSIONS.get(ext) or _MEDIA_TYPES.get(media)

    if b"%PDF-" in data[:1024]:
        return DocFormat.PDF
    if data.startswith(_ZIP_MAGIC):
        if _is_word_zip(data):
            return DocFormat.DOCX
        if claimed is DocFormat.DOCX:
            raise _unprocessable("the file is not a valid DOCX: a damaged zip or no Word document")
        if claimed is not None:
            raise _unprocessable(f"the file is a zip archive, not {claimed.value} text")
        raise _unsupported("zip archives are not supported; upload the documents one by one")
    if data.startswith(_OLE2_MAGIC):
        if claimed is DocFormat.DOCX:
            raise _unprocessable(
                "the file is a password-protected (encrypted) or legacy Word document; "
                "save it as an unprotected .docx"
            )
        raise _unsupported("legacy Office files (.doc, .xls, .ppt) are not supported")

    if claimed is None:
        if ext or media not in _GENERIC_MEDIA_TYPES:
            what = f".{ext}" if ext else media
            raise _unsupported(
                f"unsupported file type {what!r}; supported: txt, md, html, pdf, docx"
            )
        if _binary_kind(data) is not None:
            raise _unsupported("unrecognised binary file; supported: txt, md, html, pdf, docx")
        return DocFormat.HTML if _looks_like_html(data) else DocFormat.TXT

    if claimed is DocFormat.PDF:
        raise _unprocessable("the file is not a valid PDF: it has no PDF header")
    if claimed is DocFormat.DOCX:
        raise _unprocessable("the file is not a valid DOCX: it is not a zip archive")
    kind = _binary_kind(data)
    if kind is not None:
        raise _unprocessable(f"the file is {kind}, not {claimed.value} text")
    return claimed


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    # Browsers may send a Windows path as the name.
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix
    return suffix[1:].lower()


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_word_zip(data: bytes) -> bool:
    """Whether a zip holds a Word document. Reads only the central directory."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except Exception:  # any damage: not a (readable) DOCX
        return False


def _binary_kind(data: bytes) -> str | None:
    """What binary data this is, or None when the start of it reads as text."""
    for magic, what in _BINARY_MAGIC:
        if data.startswith(magic):
            return what
    sample = data[:8192]
    bom = _bom_encoding(sample)
    if bom is not None:
        # UTF-16/32 text is full of NULs; judge the decoded characters instead.
        text = sample.decode(bom, errors="replace")
    else:
        text = sample.decode("utf-8", errors="replace")
        if text.count("\ufffd") > 0.01 * len(text):
            text = sample.decode("cp1252", errors="replace")
    return "binary data" if _binary_ratio(text) > _MAX_BINARY_RATIO else None


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def extract_text(data: bytes, fmt: DocFormat, limits: ExtractLimits | None = None) -> ExtractedDoc:
    """A document's text and sections (headings kept as metadata).

    Raises IngestionError UNPROCESSABLE when the file is corrupt, encrypted, hostile (over
    a limit), binary where text was expected, or has no text at all.
    """
    limits = limits or ExtractLimits()
    extractor = _EXTRACTORS[fmt]
    try:
        return extractor(data, limits)
    except IngestionError:
        raise
    except Exception as exc:
        # A parser failing on a hostile or damaged file: never a 500. RecursionError and
        # MemoryError are Exceptions too.
        log.warning("could not extract %s: %s: %s", fmt.value, type(exc).__name__, exc)
        log.debug("extraction failure", exc_info=True)
        raise _unprocessable(f"the {fmt.value} file is damaged or unreadable") from exc


# Text: decoding and cleaning ----------------------------------------------------------------

_MAX_BINARY_RATIO = 0.05
#: Control characters (not tab, newline, carriage return, form feed), DEL, and U+FFFD.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: Control characters dropped from all extracted text (PostgreSQL text cannot even hold
#: NUL); vertical tab and form feed (PDF page breaks) become newlines.
_CONTROL_TABLE: dict[int, str | None] = {
    **{c: None for c in range(0x20) if c not in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)},
    **{c: None for c in range(0x7F, 0xA0)},
    0x0B: "\n",
    0x0C: "\n",
    0xFEFF: None,
}


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def _binary_ratio(text: str) -> float:
    if not text:
        return 0.0
    return len(_BINARY_CHARS.findall(text)) / len(text)


def _decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes of a text file as str: BOM, else UTF-8, else a declared charset or cp1252.

    Raises UNPROCESSABLE when what comes out is mostly control or undecodable characters.
    """
    bom = _bom_encoding(data)
    if bom is not None:
        # These codecs keep the BOM as a leading U+FEFF; `_clean` drops it.
        text_str = data.decode(bom, errors="replace")
    else:
        try:
            text_str = data.decode("utf-8")
        except UnicodeDecodeError:
            text_str = data.decode("utf-8", errors="replace")
            if text_str.count("\ufffd") > 0.01 * len(text_str):
                # Not UTF-8 with a stray bad byte but another 8-bit charset.
                for encoding in (declared, "cp1252"):
                    if encoding is None:
                        continue
                    try:
                        text_str = data.decode(encoding)
                        break
                    except (UnicodeDecodeError, LookupError):
                        continue
    # Judge a few windows rather than all of a large file.
    size = len(text_str)
    window = 65536
    for offset in {0, max(0, size // 2 - window // 2), max(0, size - window)}:
        if _binary_ratio(text_str[offset : offset + window]) > _MAX_BINARY_RATIO:
            raise _unprocessable("the file holds binary data, not text")
    return text_str


def _clean(text: str) -> str:
    """Text fit to store and embed: one newline style, no control characters, NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL_TABLE)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from broken PDF strings) cannot be stored or sent as JSON.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return unicodedata.normalize("NFC", text)


# Sections -----------------------------------------------------------------------------------

#: Longer "headings" are kept in the text but shortened in the metadata.
_MAX_HEADING_CHARS = 200


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


def _sections_from_blocks(blocks: Iterable[_Heading | str]) -> list[tuple[tuple[str, ...], str]]:
    """Group text blocks under the headings before them.

    A heading with no text of its own before a deeper heading (`# Guide` right before
    `## Install`) does not make a chunk of its own: its line is carried into the child
    section, whose heading path names it anyway.
    """
    sections: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[int, str]] = []
    heading: str | None = None
    carried: list[str] = []
    body: list[str] = []

    def path() -> tuple[str, ...]:
        return tuple(_short_heading(text) for _, text in stack)

    for block in [*blocks, None]:
        if isinstance(block, str):
            if block.strip():
                body.append(block.strip())
            continue
        prefix = [*carried, *([heading] if heading is not None else [])]
        carried = []
        if body:
            sections.append((path(), "\n\n".join([*prefix, *body])))
        elif prefix:
            if block is not None and stack and block.level > stack[-1][0]:
                carried = prefix
            else:
                sections.append((path(), "\n\n".join(prefix)))
        if block is None:
            break
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, block.text))
        heading = block.text
        body = []
    return sections


def _short_heading(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _MAX_HEADING_CHARS:
        return text
    return text[: _MAX_HEADING_CHARS - 1] + "…"


def _make_doc(
    fmt: DocFormat,
    parts: Iterable[tuple[tuple[str, ...], str, int | None]],
    limits: ExtractLimits,
    *,
    title: str | None = None,
    page_count: int | None = None,
    warnings: Iterable[str] = (),
    empty_message: str = "the file has no extractable text",
) -> ExtractedDoc:
    sections: list[Section] = []
    offset = 0
    for heading_path, raw_text, page in parts:
        text = raw_text.strip()
        if not text:
            continue
        if sections:
            offset += 2
        sections.append(Section(heading_path=heading_path, text=text, start=offset, page=page))
        offset += len(text)
        if offset > limits.max_text_chars:
            raise _unprocessable(
                f"the document's text is longer than {limits.max_text_chars} characters"
            )
    if not sections:
        raise _unprocessable(empty_message)
    title = " ".join(title.split()) if title else None
    return ExtractedDoc(
        format=fmt,
        text="\n\n".join(s.text for s in sections),
        sections=tuple(sections),
        title=title or None,
        page_count=page_count,
        warnings=tuple(warnings),
    )


# Plain text ---------------------------------------------------------------------------------


def _extract_txt(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    text = _clean(_decode_text(data))
    return _make_doc(DocFormat.TXT, [((), text, None)], limits)


# Markdown -----------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
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


def _markdown_blocks(text: str) -> tuple[list[_Heading | str], str | None]:
    """Headings (ATX `#` and setext underlines, not inside code fences) and the text between."""
    lines, title = _front_matter(text.split("\n"))
    blocks: list[_Heading | str] = []
    body: list[str] = []
    paragraph_start: int | None = None
    fence: str | None = None

    def flush() -> None:
        if body:
            blocks.append("\n".join(body))
            body.clear()

    for line in lines:
        if fence is not None:
            body.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            continue
        match = _FENCE.match(line)
        if match:
            fence = match.group(1)
            body.append(line)
            paragraph_start = None
            continue
        match = _ATX_HEADING.fullmatch(line)
        if match:
            heading = (match.group(2) or "").strip()
            if heading:
                flush()
                blocks.append(_Heading(len(match.group(1)), heading))
                paragraph_start = None
                continue
        match = _SETEXT_UNDERLINE.fullmatch(line)
        if match and paragraph_start is not None:
            heading = " ".join(part.strip() for part in body[paragraph_start:])
            del body[paragraph_start:]
            flush()
            blocks.append(_Heading(1 if match.group(1).startswith("=") else 2, heading))
            paragraph_start = None
            continue
        if not line.strip():
            paragraph_start = None
        elif paragraph_start is None:
            paragraph_start = len(body)
        body.append(line)
    flush()
    return blocks, title


def _extract_md(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    blocks, title = _markdown_blocks(_clean(_decode_text(data)))
    parts = [(path, text, None) for path, text in _sections_from_blocks(blocks)]
    return _make_doc(DocFormat.MD, parts, limits, title=title)


# HTML ---------------------------------------------------------------------------------------

#: Elements whose content is not text a reader sees.
_HTML_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"}
)
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
#: Elements that start a new block of text.
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "tfoot", "thead", "ul",
    }
)  # fmt: skip
_HTML_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class _HTMLText(HTMLParser):
    """Collects visible text as blocks and h1-h6 as headings; tolerant of broken markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Heading | str] = []
        self.title_parts: list[str] = []
        #: Pieces of the current block; preformatted ones keep their whitespace.
        self._pieces: list[tuple[str, bool]] = []
        self._skip = 0
        self._pre = 0
        self._in_title = False
        self._heading_level: int | None = None
        self._heading_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = True
        elif tag in _HTML_HEADINGS:
            self._end_heading()
            self._end_block()
            self._heading_level = _HTML_HEADINGS[tag]
        elif tag == "br":
            self._text("\n", preformatted=True)
        elif tag in _HTML_BLOCKS:
            self._end_block()
        elif tag == "tr" and self._pieces:
            self._text("\n", preformatted=True)  # a table is one block, a row one line
        elif tag in _HTML_CELLS and self._pieces and self._pieces[-1][0] != "\n":
            self._text(" | ", preformatted=False)
        if tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            return  # <svg/>: nothing inside to skip
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = False
        elif tag in _HTML_HEADINGS:
            self._end_heading()
        elif tag in _HTML_BLOCKS:
            self._end_block()
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title_parts.append(data)
        elif self._heading_level is not None:
            self._heading_parts.append(data)
        else:
            self._text(data, preformatted=self._pre > 0)

    def close(self) -> None:
        super().close()
        self._end_heading()
        self._end_block()

    def _text(self, data: str, *, preformatted: bool) -> None:
        if self._heading_level is not None:
            self._heading_parts.append(data)
        else:
            self._pieces.append((data, preformatted))

    def _end_heading(self) -> None:
        if self._heading_level is None:
            return
        text = " ".join("".join(self._heading_parts).split())
        if text:
            self.blocks.append(_Heading(self._heading_level, text))
        self._heading_level = None
        self._heading_parts = []

    def _end_block(self) -> None:
        if not self._pieces:
            return
        text = "".join(piece if pre else _WHITESPACE.sub(" ", piece) for piece, pre in self._pieces)
        preformatted = any(pre and piece != "\n" for piece, pre in self._pieces)
        self._pieces = []
        if preformatted:
            lines = [line.rstrip() for line in text.split("\n")]
        else:
            lines = [" ".join(line.split()) for line in text.split("\n")]
        block = "\n".join(lines).strip("\n")
        if block.strip():
            self.blocks.append(block)


def _extract_html(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    declared = _META_CHARSET.search(data[:4096])
    charset = declared.group(1).decode("ascii", errors="replace") if declared else None
    parser = _HTMLText()
    parser.feed(_clean(_decode_text(data, charset)))
    parser.close()
    parts = [(path, text, None) for path, text in _sections_from_blocks(parser.blocks)]
    title = "".join(parser.title_parts)
    return _make_doc(DocFormat.HTML, parts, limits, title=title)


# PDF ----------------------------------------------------------------------------------------


def _extract_pdf(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    if b"%PDF-" not in data[:1024]:
        raise _unprocessable("the file is not a valid PDF: it has no PDF header")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Owner-password-only PDFs (printing or copying restricted) open for anyone
            # with the empty user password, as in every viewer; others need a password.
            try:
                decrypted = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the optional crypto library
                log.info("could not decrypt PDF with the empty password: %r", exc)
                decrypted = pypdf.PasswordType.NOT_DECRYPTED
            if decrypted == pypdf.PasswordType.NOT_DECRYPTED:
                raise _unprocessable("the PDF is encrypted (password-protected)")
        page_count = len(reader.pages)
    except IngestionError:
        raise
    except Exception as exc:
        log.warning("broken PDF: %s: %s", type(exc).__name__, exc)
        raise _unprocessable("the PDF is damaged or unreadable") from exc
    if page_count > limits.max_pages:
        raise _unprocessable(f"the PDF has {page_count} pages; the limit is {limits.max_pages}")

    parts: list[tuple[tuple[str, ...], str, int | None]] = []
    warnings: list[str] = []
    total = 0
    for number in range(1, page_count + 1):
        try:
            text = reader.pages[number - 1].extract_text()
        except Exception as exc:
            log.warning("PDF page %d unreadable: %s: %s", number, type(exc).__name__, exc)
            warnings.append(f"page {number}: text could not be extracted")
            continue
        total += len(text)
        if total > limits.max_text_chars:
            raise _unprocessable(
                f"the document's text is longer than {limits.max_text_chars} characters"
            )
        parts.append(((), _clean(text), number))

    title: str | None = None
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # metadata is optional; a broken info dictionary is no reason to fail
        title = None
    return _make_doc(
        DocFormat.PDF,
        parts,
        limits,
        title=title if isinstance(title, str) else None,
        page_count=page_count,
        warnings=warnings,
        empty_message="the PDF has no extractable text (a scanned PDF needs OCR, "
        "which is not supported)",
    )


# DOCX ---------------------------------------------------------------------------------------

#: Members smaller than this are not judged by their compression ratio: small XML parts of
#: repeated markup compress very well and are harmless.
_RATIO_FLOOR_BYTES = 1 * MiB
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_INFLATE_IN = 64 * 1024
_INFLATE_OUT = 1 * MiB


def check_zip(data: bytes, limits: ExtractLimits) -> None:
    """Refuse a zip that would expand past the limits, before any parser reads it.

    The central directory's sizes can lie, and zipfile's `read()` decompresses a member in
    one step of up to 2 GB before cutting it to the declared size. So each member is also
    inflated here, a bounded step at a time, and must expand to exactly its declared size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:
        raise _unprocessable("the DOCX is not a valid zip archive") from exc
    if len(members) > limits.max_docx_members:
        raise _unprocessable(
            f"the DOCX has {len(members)} parts; the limit is {limits.max_docx_members}"
        )
    declared = sum(member.file_size for member in members)
    if declared > limits.max_docx_uncompressed_bytes:
        raise _unprocessable(
            f"the DOCX expands to {declared // MiB} MiB; "
            f"the limit is {limits.max_docx_uncompressed_bytes // MiB} MiB"
        )
    compressed = sum(member.compress_size for member in members)
    if declared > _RATIO_FLOOR_BYTES and declared > limits.max_docx_compression_ratio * max(
        compressed, 1
    ):
        raise _unprocessable("the DOCX expands suspiciously far (a zip bomb?)")
    for member in members:
        if member.flag_bits & 0x1:
            raise _unprocessable("the DOCX is encrypted")
        if (
            member.file_size > _RATIO_FLOOR_BYTES
            and member.file_size > limits.max_docx_compression_ratio * max(member.compress_size, 1)
        ):
            raise _unprocessable(f"the DOCX part {member.filename!r} expands suspiciously far")
        _check_member_size(data, member)
    if "word/document.xml" not in {member.filename for member in members}:
        raise _unprocessable("the file is a zip archive but not a Word document")


def _check_member_size(data: bytes, member: zipfile.ZipInfo) -> None:
    """Inflate one member in bounded steps; it must expand to exactly its declared size."""
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # Word writes only these; bzip2 and lzma would decompress without any bound.
        raise _unprocessable(f"the DOCX part {member.filename!r} uses an unsupported compression")
    offset = member.header_offset
    header = data[offset : offset + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size or not header.startswith(_ZIP_MAGIC):
        raise _unprocessable("the DOCX zip is damaged")
    fields = _LOCAL_HEADER.unpack(header)
    start = offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    raw = memoryview(data)[start : start + member.compress_size]
    if member.compress_type == zipfile.ZIP_STORED:
        size = len(raw)
        complete = True
    else:
        size, complete = _inflated_size(raw, stop_after=member.file_size)
    if not complete or size != member.file_size:
        raise _unprocessable(
            f"the DOCX part {member.filename!r} does not match its declared size (damaged or "
            "crafted zip)"
        )


def _inflated_size(raw: memoryview, stop_after: int) -> tuple[int, bool]:
    """Bytes a raw deflate stream expands to, stopping once past `stop_after`.

    Returns (size, whether the stream ended properly); memory stays at one output step.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    position = 0
    pending: bytes | memoryview = b""
    while not inflater.eof:
        if not pending:
            if position >= len(raw):
                # Input used up; drain what the inflater still holds, a step at a time.
                out = inflater.decompress(b"", _INFLATE_OUT)
                size += len(out)
                if not out or size > stop_after:
                    break
                continue
            pending = raw[position : position + _INFLATE_IN]
            position += _INFLATE_IN
        out = inflater.decompress(pending, _INFLATE_OUT)
        pending = inflater.unconsumed_tail
        size += len(out)
        if size > stop_after:
            return size, False
    return size, inflater.eof


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "").strip().lower() if style is not None else ""
    if name == "title":
        return 0
    match = re.fullmatch(r"heading\s*([1-9])", name)
    return int(match.group(1)) if match else None


def _docx_table_text(table: Table) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: object = None
        for cell in row.cells:
            # A merged cell is repeated for every grid column it spans.
            if cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        line = " | ".join(cells).strip(" |")
        if line:
            rows.append(line)
    return "\n".join(rows)


def _docx_blocks(document: DocxDocument) -> Iterator[_Heading | str]:
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = _clean(item.text)
            level = _docx_heading_level(item)
            if level is not None and text.strip():
                yield _Heading(level, " ".join(text.split()))
            else:
                yield text
        else:
            yield _clean(_docx_table_text(item))


def _extract_docx(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    check_zip(data, limits)
    document = docx.Document(io.BytesIO(data))
    parts = [(path, text, None) for path, text in _sections_from_blocks(_docx_blocks(document))]
    return _make_doc(DocFormat.DOCX, parts, limits, title=document.core_properties.title)


_EXTRACTORS: dict[DocFormat, Callable[[bytes, ExtractLimits], ExtractedDoc]] = {
    DocFormat.TXT: _extract_txt,
    DocFormat.MD: _extract_md,
    DocFormat.HTML: _extract_html,
    DocFormat.PDF: _extract_pdf,
    DocFormat.DOCX: _extract_docx,
}
