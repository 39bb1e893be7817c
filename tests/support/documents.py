"""Test documents built at run time: real PDF, DOCX, HTML and markdown files, and hostile ones.

No binary file is committed; each builder is small and says what its file holds.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Sequence

import docx
import pypdf

MiB = 1024 * 1024


# PDF ----------------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    """A PDF literal string in WinAnsi (Latin-1 is close enough for our tests)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def _deflated_with_padding(content: bytes, padding_bytes: int) -> bytes:
    """`content` and `padding_bytes` spaces, deflated a megabyte at a time."""
    deflate = zlib.compressobj(9)
    out = [deflate.compress(content)]
    step = b" " * (1024 * 1024)
    for start in range(0, padding_bytes, len(step)):
        out.append(deflate.compress(step[: padding_bytes - start]))
    out.append(deflate.flush())
    return b"".join(out)


def build_pdf(
    pages: Sequence[Sequence[str]], *, title: str | None = None, padding_bytes: int = 0
) -> bytes:
    """A minimal valid PDF: one line of Helvetica text per string, one page per list.

    Written by hand because pypdf cannot lay out text: a catalog, a page tree, a font, a
    page and a content stream per page, and an xref table with the real byte offsets.
    With `padding_bytes`, each content stream also holds that many spaces and is deflated:
    a few hundred kilobytes that inflate to as much as asked (a compression bomb).
    """
    objects: dict[int, bytes] = {}
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages))
    objects[3] = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for page_id, lines in zip(page_ids, pages, strict=True):
        content = (
            b"BT /F1 12 Tf 14 TL 72 720 Td "
            + b" ".join(_pdf_string(line) + b" Tj T*" for line in lines)
            + b" ET"
        )
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        stream_filter = b""
        if padding_bytes:
            content = _deflated_with_padding(content, padding_bytes)
            stream_filter = b" /Filter /FlateDecode"
        objects[page_id + 1] = (
            b"<< /Length %d%s >>\nstream\n" % (len(content), stream_filter)
            + content
            + b"\nendstream"
        )
    info_id = None
    if title is not None:
        info_id = 4 + 2 * len(pages)
        objects[info_id] = b"<< /Title " + _pdf_string(title) + b" >>"

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n" % size
    out += b"0000000000 65535 f \n"
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    info = b" /Info %d 0 R" % info_id if info_id is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (size, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def encrypt_pdf(pdf: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    """The PDF encrypted with pypdf (RC4-128: needs no optional crypto library)."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# DOCX ---------------------------------------------------------------------------------------


def build_docx(
    blocks: Sequence[tuple[int | None, str]],
    *,
    title: str | None = None,
    table: Sequence[Sequence[str]] = (),
) -> bytes:
    """A Word document: (level, text) blocks, level None a paragraph, 0 the Title style,
    1-9 a heading; then a table of `table`'s rows, if any."""
    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    for level, text in blocks:
        if level is None:
            document.add_paragraph(text)
        else:
            document.add_heading(text, level)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _copy_zip(source: bytes, target: zipfile.ZipFile) -> None:
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
        for info in archive.infolist():
            target.writestr(info, archive.read(info))


def zip_bomb_docx(expanded_bytes: int = 200 * MiB) -> bytes:
    """A real DOCX plus a member of `expanded_bytes` zeros (compressing about 1000x).

    Written in 1 MiB steps, so building it holds one step in memory, not the whole bomb.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        _copy_zip(build_docx([(None, "harmless looking text")]), archive)
        zeros = bytes(MiB)
        with archive.open("word/media/image1.png", "w", force_zip64=True) as member:
            for _ in range(expanded_bytes // MiB):
                member.write(zeros)
    return buffer.getvalue()


def lying_zip_docx(real_bytes: int = 64 * MiB, declared_bytes: int = 1000) -> bytes:
    """A DOCX whose member declares `declared_bytes` but inflates to `real_bytes` zeros.

    The central directory's size and CRC are patched to match the first `declared_bytes`,
    as a crafted bomb would: zipfile then accepts the member, and `read()` would inflate all
    of it in one step before cutting it to the declared size.
    """
    name = b"word/media/image2.png"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        _copy_zip(build_docx([(None, "harmless looking text")]), archive)
        zeros = bytes(MiB)
        with archive.open(name.decode(), "w") as member:
            for _ in range(real_bytes // MiB):
                member.write(zeros)
    data = bytearray(buffer.getvalue())
    entry = data.rindex(name) - 46  # central directory header: 46 bytes, then the name
    assert data[entry : entry + 4] == b"PK\x01\x02"
    struct.pack_into("<L", data, entry + 16, zlib.crc32(bytes(declared_bytes)))
    struct.pack_into("<L", data, entry + 24, declared_bytes)
    return bytes(data)


# Text formats -------------------------------------------------------------------------------

MARKDOWN = """---
title: The Handbook
author: someone
---
Preamble before any heading.

# Guide

## Install

Run the installer. Then restart.

```sh
# not a heading: a shell comment in a code fence
make install
```

## Use #

Open the app.

Setext Heading
--------------

Under the setext heading.

###### Deep

#hashtag is not a heading.
"""

HTML = """<!DOCTYPE html>
<html><head><title>The  Page</title>
<style>body { color: red; }</style>
<script>var hidden = "do not index";</script>
</head>
<body>
<nav>Menu</nav>
<h1>Main &amp; Title</h1>
<p>First   paragraph
spread over lines.</p>
<noscript>enable javascript</noscript>
<h2>Details</h2>
<p>Caf&eacute; &lt;b&gt; text<br>after a break</p>
<ul><li>one</li><li>two</li></ul>
<table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
<pre>  keep   spacing
  here</pre>
<svg><text>vector text</text></svg>
</body></html>
"""


def binary_bytes(size: int = 4096) -> bytes:
    """Random bytes, the same on every run: no text in them."""
    return random.Random(1234).randbytes(size)


PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + binary_bytes(256)
