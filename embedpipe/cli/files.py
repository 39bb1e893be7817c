"""Which local files `embedpipe ingest` uploads, and the stable document id of each.

Folders are walked recursively; hidden files and folders are left out; files of a type the
ingestion API does not read are reported as skipped. A document's id comes from its path
relative to the folder given (or its name, for a file given directly), so ingesting the
same folder again updates the same documents and unchanged ones are recognised.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from embedpipe.cli.api import CliError

CONTENT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "html": "text/html",
    "htm": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
MAX_ID_CHARS = 128
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")
_LEADING_NON_ALNUM = re.compile(r"^[^A-Za-z0-9]+")


@dataclass(frozen=True)
class SourceFile:
    """A file to upload."""

    path: Path
    document_id: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[extension(self.path)]


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

    path: Path
    reason: str


def extension(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def document_id_for(relative: PurePosixPath) -> str:
    """A valid document id (1-128 of letters, digits, `_ . : -`, starting with a letter or
    digit) from a relative path: folders are joined with `:`, other characters become `_`;
    an over-long id keeps its end and gets a hash of the whole path."""
    parts = [_NOT_ID_CHARS.sub("_", part) for part in relative.parts]
    candidate = _LEADING_NON_ALNUM.sub("", ":".join(parts))
    if candidate and len(candidate) <= MAX_ID_CHARS:
        return candidate
    digest = hashlib.sha256(str(relative).encode()).hexdigest()[:16]
    tail = candidate[-(MAX_ID_CHARS - len(digest) - 1) :]
    return _LEADING_NON_ALNUM.sub("", f"{digest}-{tail}")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path) -> list[Path]:
    """Non-hidden files under `folder`, by path; hidden folders are not entered."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        found += (Path(root) / name for name in files if not _is_hidden(name))
    return sorted(found, key=lambda path: path.parts)


def _candidates(paths: Sequence[str]) -> Iterable[tuple[Path, PurePosixPath]]:
    """(file, path its id comes from) for every file given or found in a folder given."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for found in _walk(path):
                yield found, PurePosixPath(found.relative_to(path).as_posix())
        elif path.is_file():
            yield path, PurePosixPath(path.name)
        else:
            raise CliError(f"no such file or folder: {given}")


def discover(paths: Sequence[str]) -> tuple[list[SourceFile], list[Skipped]]:
    """The files to upload and the files skipped (unsupported type, duplicate id)."""
    sources: list[SourceFile] = []
    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}
    for path, relative in _candidates(paths):
        if extension(path) not in CONTENT_TYPES:
            kind = f".{extension(path)}" if extension(path) else "no extension"
            skipped.append(Skipped(path, f"unsupported file type ({kind})"))
            continue
        document_id = document_id_for(relative)
        if document_id in seen:
            if seen[document_id].resolve() != path.resolve():
                reason = f"same document id {document_id!r} as {seen[document_id]}"
                skipped.append(Skipped(path, reason))
            continue
        seen[document_id] = path
        sources.append(SourceFile(path, document_id))
    return sources, skipped
