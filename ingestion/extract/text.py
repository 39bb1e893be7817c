"""Text files: decoding bytes whatever their encoding, and cleaning what comes out."""

from __future__ import annotations

import codecs
import re
import unicodedata

from ingestion.extract.document import DocFormat, ExtractedDoc, ExtractLimits, unprocessable
from ingestion.extract.structure import Part, make_doc

MAX_BINARY_RATIO = 0.05
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


def bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def binary_ratio(text: str) -> float:
    if not text:
        return 0.0
    return len(_BINARY_CHARS.findall(text)) / len(text)


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes of a text file as str: BOM, else UTF-8, else a declared charset or cp1252.

    Raises UNPROCESSABLE when what comes out is mostly control or undecodable characters.
    """
    bom = bom_encoding(data)
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
        if binary_ratio(text_str[offset : offset + window]) > MAX_BINARY_RATIO:
            raise unprocessable("the file holds binary data, not text")
    return text_str


def clean(text: str) -> str:
    """Text fit to store and embed: one newline style, no control characters, NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL_TABLE)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from broken PDF strings) cannot be stored or sent as JSON.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return unicodedata.normalize("NFC", text)


def extract_txt(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    """A plain text file: one section."""
    return make_doc(DocFormat.TXT, [Part((), clean(decode_text(data)))], limits)
