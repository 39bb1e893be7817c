"""The chunker, with the bundled model's real tokenizer: bounds, overlap, ids, headings."""

from __future__ import annotations

import functools
import hashlib
import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from embedpipe.bundled_model import MAX_INPUT_TOKENS, tokenizer_path
from ingestion.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, Chunk, Chunker
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.extract import DocFormat, ExtractedDoc, Section, extract_text
from tests.support.documents import MARKDOWN, build_pdf


@functools.cache
def tokenizer() -> Tokenizer:
    """The bundled model's tokenizer, untruncated (its tokenizer.json truncates at 128)."""
    loaded = Tokenizer.from_file(str(tokenizer_path()))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


@functools.cache
def chunker(
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS, overlap: int = DEFAULT_OVERLAP_TOKENS
) -> Chunker:
    return Chunker(tokenizer(), chunk_tokens, overlap)


def count(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def make_doc(*texts: str, headings: tuple[str, ...] = ()) -> ExtractedDoc:
    sections: list[Section] = []
    start = 0
    for i, text in enumerate(texts):
        sections.append(Section(heading_path=(*headings, f"part {i}"), text=text, start=start))
        start += len(text) + 2
    return ExtractedDoc(format=DocFormat.TXT, text="\n\n".join(texts), sections=tuple(sections))


def prose(sentences: int, start: int = 0) -> str:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    out = []
    for i in range(start, start + sentences):
        out.append(" ".join(words[(i + k) % len(words)] for k in range(5 + i % 9)).capitalize())
        out[-1] += f" number {i}."
    return " ".join(out)


def _visible(text: str) -> str:
    """The characters a model sees: no whitespace, none the tokenizer drops."""
    return "".join(ch for ch in text if not ch.isspace() and count(ch) > 0)


def check_chunks(doc: ExtractedDoc, chunks: list[Chunk], chunker: Chunker) -> None:
    """Every invariant the chunker promises, for any document."""
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    for chunk in chunks:
        meta = chunk.metadata
        assert chunk.text == doc.text[meta["char_start"] : meta["char_end"]]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.token_count == count(chunk.text)
        assert 0 < chunk.token_count <= chunker.chunk_tokens
        assert len(chunk.text) <= chunker.max_chunk_chars
        digest = hashlib.sha256(chunk.text.encode()).hexdigest()[:12]
        assert chunk.chunk_id == f"doc-1:{chunk.position}:{digest}"
        assert meta["position"] == chunk.position
        section = doc.sections[meta["section"]]
        assert meta["headings"] == list(section.heading_path)
        # Never across two sections.
        assert (
            section.start
            <= meta["char_start"]
            < meta["char_end"]
            <= section.start + len(section.text)
        )

    for index, section in enumerate(doc.sections):
        spans = [
            (c.metadata["char_start"], c.metadata["char_end"])
            for c in chunks
            if c.metadata["section"] == index
        ]
        new_text: list[str] = []
        for i, (start, end) in enumerate(spans):
            if i == 0:
                new_text.append(doc.text[start:end])
                continue
            previous_start, previous_end = spans[i - 1]
            assert previous_start < start and previous_end < end
            # A character is in at most two chunks: overlap never reaches further back.
            if i >= 2:
                assert start >= spans[i - 2][1]
            if start < previous_end:
                # The overlap: the previous chunk's tokens from where this chunk starts.
                previous = doc.text[previous_start:previous_end]
                offsets = tokenizer().encode(previous, add_special_tokens=False).offsets
                repeated = sum(1 for a, _ in offsets if a >= start - previous_start)
                assert repeated <= chunker.overlap_tokens
            new_text.append(doc.text[max(start, previous_end) : end])
        # No text lost, none repeated beyond the overlap, all in order.
        assert _visible("".join(new_text)) == _visible(section.text)


# Settings -----------------------------------------------------------------------------------


def test_defaults_fit_the_local_model_window() -> None:
    default = Chunker(tokenizer(), max_input_tokens=MAX_INPUT_TOKENS)
    assert default.chunk_tokens + 2 <= MAX_INPUT_TOKENS
    assert default.overlap_tokens == DEFAULT_OVERLAP_TOKENS


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"chunk_tokens": 255, "max_input_tokens": 256}, "chunk_tokens"),
        ({"chunk_tokens": 4}, "chunk_tokens"),
        ({"chunk_tokens": 100, "overlap_tokens": 51}, "overlap_tokens"),
        ({"overlap_tokens": -1}, "overlap_tokens"),
        ({"chunk_tokens": 100, "max_chunk_chars": 50}, "max_chunk_chars"),
    ],
)
def test_bad_settings(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(IngestionError) as info:
        Chunker(tokenizer(), **kwargs)
    assert info.value.code is IngestionErrorCode.INVALID_ARGUMENT
    assert info.value.field == field


def test_the_callers_tokenizer_is_left_as_it_was() -> None:
    truncating = Tokenizer.from_file(str(tokenizer_path()))
    Chunker(truncating)
    assert truncating.truncation is not None and truncating.truncation["max_length"] == 128
    # ... and the chunker counts past those 128 tokens all the same.
    chunks = Chunker(truncating, chunk_tokens=200, overlap_tokens=0).chunk(
        make_doc(prose(60)), "doc-1"
    )
    assert max(c.token_count for c in chunks) > 128


# Behaviour ----------------------------------------------------------------------------------


def test_long_prose_chunks_overlap_and_stay_within_bounds() -> None:
    doc = make_doc(prose(150))
    chunks = chunker().chunk(doc, "doc-1")
    check_chunks(doc, chunks, chunker())
    assert len(chunks) > 5
    assert all(c.token_count > DEFAULT_CHUNK_TOKENS // 2 for c in chunks[:-1])
    for before, after in itertools.pairwise(chunks):
        overlap = before.metadata["char_end"] - after.metadata["char_start"]
        assert overlap > 0
        # The overlap starts at a sentence start and is a real part of the chunk before.
        assert re.match(r"[A-Z]", after.text)
        assert 10 <= count(before.text[-overlap:]) <= DEFAULT_OVERLAP_TOKENS


def test_paragraph_boundaries_are_preferred() -> None:
    paragraphs = [prose(6, start=10 * i) for i in range(12)]
    doc = make_doc("\n\n".join(paragraphs))
    chunks = chunker(200, 0).chunk(doc, "doc-1")
    check_chunks(doc, chunks, chunker(200, 0))
    # Without overlap, every chunk is whole paragraphs.
    for chunk in chunks:
        assert chunk.text.split("\n\n")[0] in paragraphs
        assert chunk.text.split("\n\n")[-1] in paragraphs


def test_chunk_ids_are_stable_and_unique() -> None:
    doc = extract_text(MARKDOWN.encode() + prose(100).encode(), DocFormat.MD)
    first = chunker().chunk(doc, "doc-1")
    again = Chunker(tokenizer()).chunk(doc, "doc-1")
    assert first == again
    assert len({c.chunk_id for c in first}) == len(first)
    assert {c.chunk_id.split(":")[0] for c in chunker().chunk(doc, "other")} == {"other"}


def test_markdown_headings_are_in_chunk_metadata() -> None:
    doc = extract_text(MARKDOWN.encode(), DocFormat.MD)
    chunks = chunker().chunk(doc, "doc-1")
    check_chunks(doc, chunks, chunker())
    by_text = {c.text.split("\n")[0]: c.metadata["headings"] for c in chunks}
    assert by_text["Guide"] == ["Guide", "Install"]
    assert by_text["Setext Heading"] == ["Guide", "Setext Heading"]
    assert by_text["Preamble before any heading."] == []


def test_pdf_chunks_carry_their_page() -> None:
    doc = extract_text(build_pdf([["page one"], ["page two"]]), DocFormat.PDF)
    chunks = chunker().chunk(doc, "doc-1")
    assert [(c.text, c.metadata["page"]) for c in chunks] == [("page one", 1), ("page two", 2)]


@pytest.mark.parametrize(
    "text",
    [
        "ab" * 20_000,  # one "word": a single [UNK] token however long
        "这是一个没有标点的很长的句子" * 500,  # CJK without punctuation: a token per character
        "supercalifragilistic" * 300,  # word pieces
        ("word " * 30 + "\n") * 200,  # lines, no paragraphs
        "x" * 99 + " " + "y" * 101,
    ],
)
def test_text_without_good_boundaries_is_cut_within_bounds(text: str) -> None:
    doc = make_doc(text)
    chunks = chunker(64, 16).chunk(doc, "doc-1")
    check_chunks(doc, chunks, chunker(64, 16))


def test_text_the_model_cannot_see_gives_no_chunks() -> None:
    assert chunker().chunk(make_doc("\u200b\u200b \u200d"), "doc-1") == []


def test_bad_document_id() -> None:
    with pytest.raises(IngestionError) as info:
        chunker().chunk(make_doc("text"), "")
    assert info.value.code is IngestionErrorCode.INVALID_ARGUMENT


# Property -----------------------------------------------------------------------------------

_WORD_CHARS = st.characters(categories=("L", "N", "P", "S"))
_atoms = st.one_of(
    st.text(_WORD_CHARS, min_size=1, max_size=12),
    st.text(_WORD_CHARS, min_size=1, max_size=12),
    st.text(_WORD_CHARS, min_size=40, max_size=300),  # long words, one [UNK] past 100 chars
    st.sampled_from(["the", "chunk", "naïve", "日本語", "東京", "😀", "Zürich", "ﬁne"]),
    st.sampled_from([" ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\t", "\u00a0", "。"]),
)
_texts = st.lists(_atoms, min_size=1, max_size=300).map("".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    texts=st.lists(_texts, min_size=1, max_size=3),
    chunk_tokens=st.integers(min_value=8, max_value=80),
    overlap_share=st.floats(min_value=0, max_value=0.5),
)
def test_chunking_property(texts: list[str], chunk_tokens: int, overlap_share: float) -> None:
    texts = [t.strip() or "x" for t in texts]
    doc = make_doc(*texts, headings=("Doc",))
    splitter = chunker(chunk_tokens, int(chunk_tokens * overlap_share))
    chunks = splitter.chunk(doc, "doc-1")
    check_chunks(doc, chunks, splitter)
    assert splitter.chunk(doc, "doc-1") == chunks  # deterministic
