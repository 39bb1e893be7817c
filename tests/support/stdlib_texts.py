"""Texts from the Python standard library this interpreter ships: the same on every
machine with the same Python, nothing downloaded. The search benchmark's table and
quality set, and the model precision guard's chunks and questions.

* `table_texts`: chunks of two consecutive prose-like lines (comments, docstrings, code
  with words) of the library's modules, and held-out lines as queries;
* `labelled_set`: the retrieval quality set of docs/search-quality.md: each documented
  public function of a fixed list of modules is a document (its name, signature and its
  docstring after the first line); that first line, its summary, is the query whose one
  relevant document it is.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import re
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WORDY = re.compile(r"[A-Za-z]{3,}")


def _wordy_lines(path: Path) -> list[str]:
    """The file's lines of 30-200 characters with at least four words."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    lines = (line.strip() for line in text.splitlines())
    return [s for s in lines if 30 <= len(s) <= 200 and len(_WORDY.findall(s)) >= 4]


def table_texts(count: int, queries: int) -> tuple[list[str], list[str]]:
    """`count` distinct chunks (two consecutive lines of a module, in library order) and
    `queries` distinct query lines from other modules: every tenth is held out."""
    root = Path(sysconfig.get_path("stdlib"))
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    chunks: dict[str, None] = {}
    held_out: dict[str, None] = {}
    for index, path in enumerate(files):
        lines = _wordy_lines(path)
        if index % 10 == 9:
            held_out.update(dict.fromkeys(lines))
            continue
        for first, second in itertools.pairwise(lines):
            chunks[f"{first}\n{second}"] = None
    if len(chunks) < count or len(held_out) < queries:
        raise SystemExit(f"the standard library gives {len(chunks)} chunks, {count} needed")
    picked = np.random.default_rng(7).permutation(len(chunks))[:count]
    listed = list(chunks)
    asked = list(held_out)
    step = len(asked) // queries
    return [listed[i] for i in sorted(picked)], asked[::step][:queries]


def passages(count: int, words: int) -> list[str]:
    """`count` RAG-sized chunks: runs of consecutive prose-like lines of a module, each of
    at least `words` words, in library order."""
    root = Path(sysconfig.get_path("stdlib"))
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts):
        run: list[str] = []
        for line in _wordy_lines(path):
            run.append(line)
            if sum(len(_WORDY.findall(r)) for r in run) >= words:
                found.append("\n".join(run))
                run = []
                if len(found) == count:
                    return found
    raise SystemExit(f"the standard library gives {len(found)} passages, {count} needed")


#: Modules of the labelled set: widely used, well documented.
MODULES = (
    "argparse",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "datetime",
    "difflib",
    "email.utils",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "platform",
    "queue",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "signal",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "tokenize",
    "traceback",
    "typing",
    "unicodedata",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
)


@dataclass(frozen=True)
class Labelled:
    #: Document id -> text.
    documents: dict[str, str]
    #: (query, id of its one relevant document): the summary line of a function.
    queries: list[tuple[str, str]]
    #: (query, id): the bare name of a function no other document shares ("copytree").
    by_name: list[tuple[str, str]]


def labelled_set() -> Labelled:
    # Reading the docs of deprecated members (typing.io) warns; they are documents too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _labelled_set()


def _labelled_set() -> Labelled:
    documents: dict[str, str] = {}
    queries: list[tuple[str, str]] = []
    seen_summaries: set[str] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or not callable(value):
                continue
            if getattr(value, "__module__", None) not in (module_name, module.__name__):
                continue  # imported from elsewhere
            doc = inspect.getdoc(value) or ""
            summary, _, rest = doc.partition("\n")
            rest = rest.strip()
            words = len(_WORDY.findall(summary))
            if words < 4 or len(_WORDY.findall(rest)) < 8 or summary in seen_summaries:
                continue
            seen_summaries.add(summary)
            try:
                # Without addresses (`<object object at 0x7f...>`): the same text every run.
                signature = re.sub(r" at 0x[0-9a-f]+", "", str(inspect.signature(value)))
            except (TypeError, ValueError):
                signature = "(...)"
            document_id = f"{module_name}.{name}"
            documents[document_id] = f"{document_id}{signature}\n\n{rest}"
            queries.append((summary, document_id))
    names = [document_id.rsplit(".", 1)[1] for document_id in documents]
    by_name = [
        (name, i) for name, i in zip(names, documents, strict=True) if names.count(name) == 1
    ]
    return Labelled(documents, queries, by_name)
