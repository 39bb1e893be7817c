"""The cheap bound that lets validation skip the tokenizer is never below its count."""

from __future__ import annotations

import random
import re

import pytest
from tokenizers import Tokenizer

from embedding.providers.token_bound import WordPieceBound
from embedpipe import bundled_model
from tests.support.processes import REPO


@pytest.fixture(scope="module")
def counter() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(bundled_model.tokenizer_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def real_texts() -> list[str]:
    """The project's own prose and code, in pieces of about a chunk: headings, tables,
    URLs, identifiers, numbers, SQL, Lua, JSON."""
    files = [*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("embedding/*.py")]
    files += [*REPO.glob("ingestion/migrations/*.sql"), REPO / "ingestion/openapi.json"]
    texts = []
    for path in sorted(files):
        text = path.read_text()
        texts += [text[i : i + 900] for i in range(0, len(text), 900)]
    return texts


def test_the_bound_is_at_least_the_count_and_close_on_prose(counter: Tokenizer) -> None:
    bound = WordPieceBound.of(counter)
    assert bound is not None
    texts = real_texts()
    assert len(texts) > 300
    exact = ascii_texts = 0
    for text in texts:
        count = len(counter.encode(text).ids)
        found = bound(text)
        if not text.isascii():
            assert found is None
            continue
        assert found is not None and found >= count, text
        ascii_texts += 1
        exact += found == count
    # Useful, not only safe: the bound of nearly every ASCII piece is its exact count.
    assert exact / ascii_texts > 0.9


@pytest.mark.parametrize(
    "text",
    [
        "!!!???...,,,;;;" * 20,
        "x" * 150,  # one word past WordPiece's 100 characters: [UNK]
        "[CLS] [SEP] [MASK] [UNK] [PAD]",
        "a\tb\nc\rd e",
        "https://example.com/a_b-c?d=1&e=%20#f",
        "1234567890" * 30,
        "UPPER lower MiXeD",
        "".join(random.Random(7).choice("abcdefghij ,.-'") for _ in range(1500)),
    ],
    ids=["punctuation", "long word", "special tokens", "whitespace", "url", "digits",
         "case", "random"],
)  # fmt: skip
def test_hostile_ascii_is_bounded_too(counter: Tokenizer, text: str) -> None:
    bound = WordPieceBound.of(counter)
    assert bound is not None
    found = bound(text)
    assert found is not None and found >= len(counter.encode(text).ids)


@pytest.mark.parametrize("text", ["café au lait", "日本語", "ab\x0bcd", "a\x00b", "tab\x7f"])
def test_text_the_normaliser_changes_gets_no_bound(counter: Tokenizer, text: str) -> None:
    """Accents, CJK and control characters: the tokenizer counts those."""
    bound = WordPieceBound.of(counter)
    assert bound is not None and bound(text) is None


def test_only_bert_wordpiece_tokenizers_get_one(counter: Tokenizer) -> None:
    config = counter.to_str()
    other = Tokenizer.from_str(re.sub(r'"BertPreTokenizer"', '"Whitespace"', config, count=1))
    assert WordPieceBound.of(other) is None
