"""Deterministic English-like text for tests and benchmarks: documents on a dozen topics
(paragraphs of sentences), queries and single sentences. Nothing is downloaded; the same seed
gives the same text."""

from __future__ import annotations

import random
from collections.abc import Sequence

SEED = 20240611


def _words(text: str) -> list[str]:
    return text.split()


_COMMON = _words(
    "the a of and to in is for on with as by at from that this it be are was were has have "
    "which their its more most some many each every other new first last long short high low "
    "after before during between under over across within without through against toward "
    "often rarely always usually nearly quickly slowly carefully clearly simply mostly also "
    "builds measures describes improves reduces supports explains collects shares follows "
    "shows changes needs keeps gives makes takes finds brings moves turns leads grows holds"
)


_TOPICS = {
    "rivers": "river water flood bank delta current stream valley rain basin bridge fish boat",
    "markets": "market price trade demand supply buyer seller cost profit shop goods value bank",
    "energy": "energy power solar wind grid battery fuel heat plant turbine coal oil electric",
    "health": "doctor hospital patient nurse health disease medicine care treatment clinic drug",
    "schools": "school student teacher class lesson exam book library reading course college",
    "cities": "city street road train station traffic building park house council district",
    "farms": "farm farmer crop field harvest soil seed cattle grain orchard barn tractor",
    "music": "music song band concert guitar piano rhythm melody singer album stage sound",
    "weather": "weather storm cloud snow winter summer temperature forecast wind frost sky",
    "software": "software code program server network data model system user bug release test",
    "forests": "forest tree wood leaf branch root bird animal trail mountain moss deer pine",
    "oceans": "ocean sea wave coast island ship harbour tide beach whale salt reef sailor",
}


_TOPIC_WORDS = {name: words.split() for name, words in _TOPICS.items()}


_ADJECTIVES = _words(
    "green quiet early large small modern ancient public private local global careful "
    "bright dark warm cold fast slow heavy light rich poor young old strong weak open busy"
)


def _sentence(rng: random.Random, topic: Sequence[str], length: int) -> str:
    words = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.35:
            words.append(rng.choice(topic))
        elif roll < 0.5:
            words.append(rng.choice(_ADJECTIVES))
        else:
            words.append(rng.choice(_COMMON))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".........?!")


def make_document(rng: random.Random, words: int) -> str:
    """About `words` words on one topic: paragraphs of 3-7 sentences of 6-24 words."""
    topic = _TOPIC_WORDS[rng.choice(sorted(_TOPIC_WORDS))]
    target = max(1, words + rng.randint(-words // 10, words // 10))
    paragraphs: list[str] = []
    written = 0
    while written < target:
        sentences = []
        for _ in range(rng.randint(3, 7)):
            length = min(rng.randint(6, 24), max(1, target - written))
            sentences.append(_sentence(rng, topic, length))
            written += length
            if written >= target:
                break
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


def make_documents(count: int, words: int, *, seed: int = SEED) -> list[str]:
    """`count` documents, the same for the same seed."""
    rng = random.Random(seed)
    return [make_document(rng, words) for _ in range(count)]


def make_sentence(rng: random.Random, words: int) -> str:
    """One sentence of `words` words on a topic picked at random."""
    topic = _TOPIC_WORDS[rng.choice(sorted(_TOPIC_WORDS))]
    return _sentence(rng, topic, words)


def make_queries(count: int, *, seed: int = SEED + 7) -> list[str]:
    """`count` short questions-like sentences of 4-12 words."""
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        topic = _TOPIC_WORDS[rng.choice(sorted(_TOPIC_WORDS))]
        queries.append(_sentence(rng, topic, rng.randint(4, 12)))
    return queries
