"""DOCX, read by python-docx after our own zip checks: Word's heading styles become
sections, tables are kept whole.

A DOCX is a zip, and python-docx loads every part into memory: `check_zip` refuses a zip
that would expand past the limits (a zip bomb) before any parser reads it.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator

import docx
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.paragraph import Paragraph

from ingestion.extract.detect import ZIP_MAGIC
from ingestion.extract.document import DocFormat, ExtractedDoc, ExtractLimits, MiB, unprocessable
from ingestion.extract.structure import Block, Heading, make_doc, sections_from_blocks
from ingestion.extract.text import clean

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
        raise unprocessable("the DOCX is not a valid zip archive") from exc
    if len(members) > limits.max_docx_members:
        raise unprocessable(
            f"the DOCX has {len(members)} parts; the limit is {limits.max_docx_members}"
        )
    declared = sum(member.file_size for member in members)
    if declared > limits.max_docx_uncompressed_bytes:
        raise unprocessable(
            f"the DOCX expands to {declared // MiB} MiB; "
            f"the limit is {limits.max_docx_uncompressed_bytes // MiB} MiB"
        )
    compressed = sum(member.compress_size for member in members)
    if declared > _RATIO_FLOOR_BYTES and declared > limits.max_docx_compression_ratio * max(
        compressed, 1
    ):
        raise unprocessable("the DOCX expands suspiciously far (a zip bomb?)")
    for member in members:
        if member.flag_bits & 0x1:
            raise unprocessable("the DOCX is encrypted")
        if (
            member.file_size > _RATIO_FLOOR_BYTES
            and member.file_size > limits.max_docx_compression_ratio * max(member.compress_size, 1)
        ):
            raise unprocessable(f"the DOCX part {member.filename!r} expands suspiciously far")
        _check_member_size(data, member)
    if "word/document.xml" not in {member.filename for member in members}:
        raise unprocessable("the file is a zip archive but not a Word document")


def _check_member_size(data: bytes, member: zipfile.ZipInfo) -> None:
    """Inflate one member in bounded steps; it must expand to exactly its declared size."""
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # Word writes only these; bzip2 and lzma would decompress without any bound.
        raise unprocessable(f"the DOCX part {member.filename!r} uses an unsupported compression")
    offset = member.header_offset
    header = data[offset : offset + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size or not header.startswith(ZIP_MAGIC):
        raise unprocessable("the DOCX zip is damaged")
    fields = _LOCAL_HEADER.unpack(header)
    start = offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    raw = memoryview(data)[start : start + member.compress_size]
    if member.compress_type == zipfile.ZIP_STORED:
        size = len(raw)
        complete = True
    else:
        size, complete = _inflated_size(raw, stop_after=member.file_size)
    if not complete or size != member.file_size:
        raise unprocessable(
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


def _docx_blocks(document: DocxDocument) -> Iterator[Heading | Block]:
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = clean(item.text)
            level = _docx_heading_level(item)
            if level is not None and text.strip():
                yield Heading(level, " ".join(text.split()))
            else:
                yield Block(text)
        else:
            yield Block(clean(_docx_table_text(item)), whole=True)


def extract_docx(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    check_zip(data, limits)
    document = docx.Document(io.BytesIO(data))
    parts = sections_from_blocks(_docx_blocks(document))
    return make_doc(DocFormat.DOCX, parts, limits, title=document.core_properties.title)
