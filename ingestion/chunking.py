"""Token-aware recursive chunking with overlap, measured with the embedding model's tokenizer.

A section's text is cut into pieces that each fit a chunk: by paragraphs, then lines, then
sentences, then words, and as a last resort at token boundaries (from the tokenizer's
offsets). Pieces are merged greedily up to `chunk_tokens`, ending a chunk at the strongest
boundary available (a paragraph rather than mid-paragraph) once it is at least half full.
Each chunk after the first starts with about `overlap_tokens` from the end of the one before,
begun at a sentence or word start. Chunks never span two sections, so each keeps its
headings; every chunk is a verbatim span of the document text (offsets in its metadata).
A block the extractor marks to keep whole (a code block, a table) is one piece when it fits
a chunk, so no chunk ends inside it, and no overlap starts inside it either.

Token counts are of the tokenizer without special tokens; a model adds its own ([CLS] and
[SEP] for BERT-like models), so `chunk_tokens` must leave room for them: the defaults, 200 with
40 of overlap, fit all-MiniLM-L6-v2's 256-token window with room to spare.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Encoding, Tokenizer

from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.extract import ExtractedDoc, Section

#: Changes when the same document and settings would give other chunks (a new extractor or
#: chunking rule): part of a document's content hash, so a re-upload is chunked afresh.
CHUNKING_VERSION = 2
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 40
#: Below this a chunk is no use, and one character may not fit (byte-level BPE: 4 tokens).
MIN_CHUNK_TOKENS = 8

#: Full stops (also the ellipsis and CJK ones), and the quotes and brackets that may
#: close a sentence after its full stop.
_STOP = ".!?\u2026"
_CJK_STOP = "\u3002\uff01\uff1f"
_CLOSE = "\"')\\]\u00bb\u201d\u2019\u300d\u300f"
#: Separators of the recursive split, strongest first; a piece ends after its separator.
_SEPARATORS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n[^\S\n]*\n\s*"),  # paragraph: a blank line
    re.compile(r"\n\s*"),  # line
    re.compile(f"[{_STOP}]+[{_CLOSE}]*\\s+|[{_CJK_STOP}]+[{_CLOSE}]*\\s*"),  # sentence
    re.compile(r"\s+"),  # word
)
#: Boundary strengths: the end of a section, then one per separator, then a token cut. The
#: end of a block kept whole is as strong a place to end a chunk as a paragraph's.
_SECTION_END = len(_SEPARATORS) + 1
_BLOCK_END = len(_SEPARATORS)
_TOKEN_CUT = 0
#: Text ending here ends a sentence or a line, so what follows starts one.
_SENTENCE_END = re.compile(f"(?:[{_STOP}{_CJK_STOP}][{_CLOSE}]*|\\n)\\s*$")
_SENTENCE_LOOKBACK = 16


@dataclass(frozen=True)
class Chunk:
    """One piece of a document to embed, with a stable id."""

    #: f"{document_id}:{position}:{sha256(text)[:12]}": the same document gives the same ids.
    chunk_id: str
    #: 0-based order within the document.
    position: int
    text: str
    #: Tokens of `text` without special tokens; at most the chunker's `chunk_tokens`.
    token_count: int
    #: JSON-safe: position, headings (list of str), section, char_start/char_end (offsets
    #: of `text` in `ExtractedDoc.text`) and page for PDFs.
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    #: How good a place to end a chunk our end is (see `_SEPARATORS`).
    strength: int


class Chunker:
    """Splits extracted documents into chunks of at most `chunk_tokens` tokens."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        *,
        max_chunk_chars: int | None = None,
        max_input_tokens: int | None = None,
    ) -> None:
        """Args:
        tokenizer: the collection model's tokenizer. If it truncates or pads, a copy that
            does not is used (and cached): a tokenizer.json that truncates (all-MiniLM-L6-v2's
            does, at 128) would undercount long texts. The tokenizer is not changed.
        chunk_tokens: most tokens of a chunk (without special tokens).
        overlap_tokens: about how many tokens a chunk repeats from the one before; at most
            half of `chunk_tokens`.
        max_chunk_chars: most characters of a chunk (default 20 per token), so a long run
            without spaces, one [UNK] token however long, still gives small chunks.
        max_input_tokens: the model's window, if known; chunks plus special tokens must fit.
        """
        if chunk_tokens < MIN_CHUNK_TOKENS:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT,
                f"chunk_tokens must be at least {MIN_CHUNK_TOKENS}",
                field="chunk_tokens",
            )
        if not 0 <= overlap_tokens <= chunk_tokens // 2:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT,
                "overlap_tokens must be between 0 and half of chunk_tokens",
                field="overlap_tokens",
            )
        self._tokenizer = _counting_tokenizer(tokenizer)
        if max_input_tokens is not None:
            special = self._tokenizer.num_special_tokens_to_add(is_pair=False)
            if chunk_tokens + special > max_input_tokens:
                raise IngestionError(
                    IngestionErrorCode.INVALID_ARGUMENT,
                    f"chunk_tokens {chunk_tokens} plus {special} special tokens exceed the "
                    f"model's {max_input_tokens}-token window",
                    field="chunk_tokens",
                )
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        #: Pieces are at most this long, so that any piece fits after a full overlap.
        self._piece_tokens = chunk_tokens - overlap_tokens
        self.max_chunk_chars = max_chunk_chars or 20 * chunk_tokens
        if self.max_chunk_chars < chunk_tokens:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT,
                "max_chunk_chars must be at least chunk_tokens",
                field="max_chunk_chars",
            )

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without special tokens."""
        return len(self._encode(text).ids)

    def chunk(self, doc: ExtractedDoc, document_id: str) -> list[Chunk]:
        """The document's chunks in order; deterministic for the same document and id."""
        if not document_id:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT, "document_id is empty", field="document_id"
            )
        chunks: list[Chunk] = []
        for index, section in enumerate(doc.sections):
            for start, end, tokens in self._chunk_section(section.text, section.keep_whole):
                chunks.append(
                    self._make_chunk(document_id, len(chunks), index, section, start, end, tokens)
                )
        return chunks

    # Building chunks ------------------------------------------------------------------------

    def _make_chunk(
        self,
        document_id: str,
        position: int,
        section_index: int,
        section: Section,
        start: int,
        end: int,
        tokens: int,
    ) -> Chunk:
        text = section.text[start:end]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        metadata: dict[str, Any] = {
            "position": position,
            "headings": list(section.heading_path),
            "section": section_index,
            "char_start": section.start + start,
            "char_end": section.start + end,
        }
        if section.page is not None:
            metadata["page"] = section.page
        return Chunk(
            chunk_id=f"{document_id}:{position}:{digest}",
            position=position,
            text=text,
            token_count=tokens,
            metadata=metadata,
        )

    def _pieces(self, text: str, keep_whole: Sequence[tuple[int, int]]) -> list[_Piece]:
        """A section's pieces: each block to keep whole (a code block, a table) is one piece
        if it fits a chunk, and the text around them is split as usual."""
        pieces: list[_Piece] = []
        position = 0
        for start, end in sorted(keep_whole):
            if start < position or end <= start:
                continue  # overlapping or empty: not a span we can honour
            if start > position:
                count = self._count_span(text, position, start)
                pieces += self._split(text, position, start, count, 0, _BLOCK_END)
            count = self._count_span(text, start, end)
            if count is not None and self._fits(count, end - start):
                pieces.append(_Piece(start, end, count, _BLOCK_END))
            else:
                pieces += self._split(text, start, end, count, 0, _BLOCK_END)
            position = end
        if position < len(text):
            count = self._count_span(text, position, len(text))
            pieces += self._split(text, position, len(text), count, 0, _SECTION_END)
        return pieces

    def _chunk_section(
        self, text: str, keep_whole: Sequence[tuple[int, int]] = ()
    ) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of each chunk of one section's text."""
        pieces = self._pieces(text, keep_whole)
        inside = [span for span in keep_whole if span[1] > span[0]]
        spans: list[tuple[int, int, int]] = []
        index = 0
        start = pieces[0].start if pieces else 0
        overlap = 0  # estimated tokens of text[start:pieces[index].start]
        previous_end = 0  # end of the chunk before the last one: overlap never reaches into it
        while index < len(pieces):
            stop = self._fill(pieces, index, overlap, start)
            stop, start, encoding = self._verify(text, pieces, index, stop, start)
            end = pieces[stop - 1].end
            first, last = _strip_bounds(text, start, end)
            if first < last and encoding.ids:
                spans.append((first, last, len(encoding.ids)))
            index = stop
            if index == len(pieces):
                break
            budget = min(self.overlap_tokens, self.chunk_tokens - pieces[index].tokens)
            floor = max(previous_end, first + 1)
            previous_end = end
            start, overlap = self._overlap_start(text, first, end, encoding, budget, floor, inside)
        return spans

    def _fill(self, pieces: Sequence[_Piece], index: int, overlap: int, start: int) -> int:
        """Greedy: pieces from `index` while they fit; then the best boundary to end at."""
        total = overlap
        stop = index
        while stop < len(pieces) and self._fits(
            total + pieces[stop].tokens, pieces[stop].end - start
        ):
            total += pieces[stop].tokens
            stop += 1
        if stop == index:
            return index + 1  # the overlap must go; `_verify` drops it
        # End at the strongest boundary that leaves the chunk at least half full.
        eligible = [stop - 1]
        total = overlap
        for k in range(index, stop - 1):
            total += pieces[k].tokens
            if 2 * total >= self.chunk_tokens:
                eligible.append(k)
        return max(eligible, key=lambda k: (pieces[k].strength, k)) + 1

    def _verify(
        self, text: str, pieces: Sequence[_Piece], index: int, stop: int, start: int
    ) -> tuple[int, int, Encoding]:
        """Shrink a chunk until its real token count fits (merged counts are estimates)."""
        while True:
            end = pieces[stop - 1].end
            first, last = _strip_bounds(text, start, end)
            encoding = self._encode(text[first:last])
            if self._fits(len(encoding.ids), last - first):
                return stop, start, encoding
            if stop - 1 > index:
                stop -= 1
            elif start < pieces[index].start:
                start = pieces[index].start
            else:
                # One piece, whose count was measured on exactly this text: cannot happen.
                return stop, start, encoding

    def _overlap_start(
        self,
        text: str,
        first: int,
        end: int,
        encoding: Encoding,
        budget: int,
        floor: int,
        keep_whole: Sequence[tuple[int, int]],
    ) -> tuple[int, int]:
        """Where the next chunk starts: at most `budget` tokens before `end`, not before
        `floor`, never inside a block kept whole, preferably at a sentence start, else a
        word start, else a token start. Returns (start, tokens of the overlap); (end, 0)
        for no overlap.
        """
        starts = [first + offset[0] for offset in encoding.offsets]
        count = len(starts)
        if budget <= 0 or count == 0:
            return end, 0
        # Several tokens can start at one character (a Hangul syllable gives three jamo):
        # only the first of them is a place to start.
        candidates = [
            k
            for k in range(max(1, count - budget), count)
            if starts[k] >= floor
            and starts[k] > starts[k - 1]
            and not any(a < starts[k] < b for a, b in keep_whole)
        ]
        if not candidates:
            return end, 0
        words = [k for k in candidates if text[starts[k] - 1].isspace()]
        sentences = [
            k
            for k in candidates
            if 2 * (count - k) >= budget
            and _SENTENCE_END.search(text, max(0, starts[k] - _SENTENCE_LOOKBACK), starts[k])
        ]
        k = (sentences or words or candidates)[0]
        return starts[k], count - k

    # Splitting ------------------------------------------------------------------------------

    def _split(
        self, text: str, start: int, end: int, tokens: int | None, level: int, strength: int
    ) -> list[_Piece]:
        """Pieces of text[start:end] that each fit a chunk; `tokens` None means too long."""
        if tokens is not None and self._fits_piece(tokens, end - start):
            return [_Piece(start, end, tokens, strength)]
        for depth in range(level, len(_SEPARATORS)):
            cuts = [
                match.end()
                for match in _SEPARATORS[depth].finditer(text, start, end)
                if start < match.end() < end
            ]
            if not cuts:
                continue
            bounds = [start, *cuts, end]
            spans = list(itertools.pairwise(bounds))
            counts = self._count_spans(text, spans)
            pieces: list[_Piece] = []
            for i, ((a, b), count) in enumerate(zip(spans, counts, strict=True)):
                ends = strength if i == len(spans) - 1 else len(_SEPARATORS) - depth
                pieces.extend(self._split(text, a, b, count, depth + 1, ends))
            return pieces
        return self._split_tokens(text, start, end, strength)

    def _split_tokens(self, text: str, start: int, end: int, strength: int) -> list[_Piece]:
        """The last resort: cut at token boundaries (e.g. a long run without spaces)."""
        pieces: list[_Piece] = []
        limit = self._piece_tokens
        position = start
        window = min(self.max_chunk_chars, 4 * limit)
        while position < end:
            window_end = min(end, position + window)
            offsets = self._encode(text[position:window_end]).offsets
            if len(offsets) <= limit and window_end < end and window < self.max_chunk_chars:
                # Long tokens (e.g. one [UNK] for a whole long word): look further.
                window = min(self.max_chunk_chars, 2 * window)
                continue
            candidates = sorted({position + a for a, _ in offsets[1 : limit + 1] if a > 0})
            if len(offsets) <= limit and window_end == end:
                candidates.append(end)
            cut, tokens = self._longest_fit(text, position, candidates)
            if cut is None:
                # No token boundary fits (one token longer than max_chunk_chars): cut chars.
                chars = range(position + 1, window_end + 1)
                cut, tokens = self._longest_fit(text, position, chars)
                if cut is None:  # not even one character: cannot happen above MIN_CHUNK_TOKENS
                    cut, tokens = position + 1, self._count_span(text, position, position + 1) or 0
            pieces.append(_Piece(position, cut, tokens, strength if cut == end else _TOKEN_CUT))
            position = cut
        return pieces

    def _longest_fit(
        self, text: str, start: int, candidates: Sequence[int]
    ) -> tuple[int | None, int]:
        """The last candidate end whose span fits a piece, as (end, tokens); (None, 0) if none.

        Tries the last one first (it usually fits), then searches.
        """
        best: tuple[int | None, int] = (None, 0)
        low, high = 0, len(candidates) - 1
        middle = high
        while low <= high:
            tokens = self._count_span(text, start, candidates[middle])
            if tokens is not None and self._fits_piece(tokens, candidates[middle] - start):
                best = (candidates[middle], tokens)
                low = middle + 1
            else:
                high = middle - 1
            middle = (low + high) // 2
        return best

    # Counting -------------------------------------------------------------------------------

    def _fits(self, tokens: int, chars: int) -> bool:
        """Whether a chunk of this size is allowed."""
        return tokens <= self.chunk_tokens and chars <= self.max_chunk_chars

    def _fits_piece(self, tokens: int, chars: int) -> bool:
        """Whether a piece of this size leaves room for a full overlap before it."""
        return tokens <= self._piece_tokens and chars <= self.max_chunk_chars

    def _encode(self, text: str) -> Encoding:
        return self._tokenizer.encode(text, add_special_tokens=False)

    def _count_span(self, text: str, start: int, end: int) -> int | None:
        """Tokens of the stripped span, or None when it has too many characters to fit."""
        if end - start > self.max_chunk_chars:
            return None
        first, last = _strip_bounds(text, start, end)
        return len(self._encode(text[first:last]).ids)

    def _count_spans(self, text: str, spans: Sequence[tuple[int, int]]) -> list[int | None]:
        """`_count_span` of many spans, encoded in one batch."""
        wanted: list[int] = []
        texts: list[str] = []
        for i, (start, end) in enumerate(spans):
            if end - start <= self.max_chunk_chars:
                first, last = _strip_bounds(text, start, end)
                wanted.append(i)
                texts.append(text[first:last])
        counts: list[int | None] = [None] * len(spans)
        if texts:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
            for i, encoding in zip(wanted, encodings, strict=True):
                counts[i] = len(encoding.ids)
        return counts


_counting_copies: weakref.WeakKeyDictionary[Tokenizer, Tokenizer] = weakref.WeakKeyDictionary()
_counting_copies_lock = threading.Lock()


def _counting_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer itself if it neither truncates nor pads, else a copy that does not.

    Copies are kept per tokenizer (making one takes about 50 ms), so a Chunker per
    document costs nothing.
    """
    if tokenizer.truncation is None and tokenizer.padding is None:
        return tokenizer
    with _counting_copies_lock:
        copy = _counting_copies.get(tokenizer)
        if copy is None:
            copy = Tokenizer.from_str(tokenizer.to_str())
            copy.no_truncation()
            copy.no_padding()
            _counting_copies[tokenizer] = copy
        return copy


def _strip_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """text[start:end] without leading and trailing whitespace, as bounds."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
