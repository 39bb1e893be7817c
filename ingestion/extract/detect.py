"""What format an upload is: its name and content type, checked against its bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from ingestion.extract.document import DocFormat, unprocessable, unsupported
from ingestion.extract.text import MAX_BINARY_RATIO, binary_ratio, bom_encoding

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

ZIP_MAGIC = b"PK\x03\x04"
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
    (ZIP_MAGIC, "a zip archive"),
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
        raise unprocessable("the file is empty")
    ext = _extension(filename)
    media = _media_type(content_type)
    claimed = _EXTENSIONS.get(ext) or _MEDIA_TYPES.get(media)

    if b"%PDF-" in data[:1024]:
        return DocFormat.PDF
    if data.startswith(ZIP_MAGIC):
        if _is_word_zip(data):
            return DocFormat.DOCX
        if claimed is DocFormat.DOCX:
            raise unprocessable("the file is not a valid DOCX: a damaged zip or no Word document")
        if claimed is not None:
            raise unprocessable(f"the file is a zip archive, not {claimed.value} text")
        raise unsupported("zip archives are not supported; upload the documents one by one")
    if data.startswith(_OLE2_MAGIC):
        if claimed is DocFormat.DOCX:
            raise unprocessable(
                "the file is a password-protected (encrypted) or legacy Word document; "
                "save it as an unprotected .docx"
            )
        raise unsupported("legacy Office files (.doc, .xls, .ppt) are not supported")

    if claimed is None:
        if ext or media not in _GENERIC_MEDIA_TYPES:
            what = f".{ext}" if ext else media
            raise unsupported(
                f"unsupported file type {what!r}; supported: txt, md, html, pdf, docx"
            )
        if _binary_kind(data) is not None:
            raise unsupported("unrecognised binary file; supported: txt, md, html, pdf, docx")
        return DocFormat.HTML if _looks_like_html(data) else DocFormat.TXT

    if claimed is DocFormat.PDF:
        raise unprocessable("the file is not a valid PDF: it has no PDF header")
    if claimed is DocFormat.DOCX:
        raise unprocessable("the file is not a valid DOCX: it is not a zip archive")
    kind = _binary_kind(data)
    if kind is not None:
        raise unprocessable(f"the file is {kind}, not {claimed.value} text")
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
    bom = bom_encoding(sample)
    if bom is not None:
        # UTF-16/32 text is full of NULs; judge the decoded characters instead.
        text = sample.decode(bom, errors="replace")
    else:
        text = sample.decode("utf-8", errors="replace")
        if text.count("\ufffd") > 0.01 * len(text):
            text = sample.decode("cp1252", errors="replace")
    return "binary data" if binary_ratio(text) > MAX_BINARY_RATIO else None


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))
