"""Vectors through `POST /api/v1/embed` match the stored reference vectors: cosine ≥ 0.9999 and
the same token count, one text at a time and as one batch, for both served models.

all-MiniLM-L6-v2's reference is normalised, so `normalize` is left to its default (true);
paraphrase-MiniLM-L3-v2's is not, so it is asked for with `normalize: false`.
"""

import pytest

from .harness import DEFAULT_MODEL, PARITY_COSINE, SECOND_MODEL, cosine, golden, norm

# A spread of the reference texts: short, empty, accented, CJK, Arabic, emoji, whitespace,
# code, and two past the models' max_seq_length (truncated to 256 / 128 tokens).
SUBSET = [
    "hello world",
    "Paris is the capital and most populous city of France.",
    "",
    "Café naïve façade coöperate résumé",
    "机器学习是人工智能的一个分支。",
    "東京は日本の首都です。",
    "مرحبا بالعالم",
    "Launch day 🚀🎉 everything is green ✅",
    "line one\nline two\ttabbed",
    'fn main() { println!("hello"); }',
]
LONG_PREFIXES = ("The migration of an embedding service", "word word word")

OPTIONS = {DEFAULT_MODEL: {}, SECOND_MODEL: {"normalize": False}}


CASES = SUBSET + list(LONG_PREFIXES)
CASE_IDS = [
    "hello", "paris", "empty", "accents", "chinese", "japanese", "arabic", "emoji",
    "newline-tab", "code", "long-prose-truncated", "long-repeat-truncated",
]


def reference(model, case):
    """The reference item of `model` for `case` (a text, or the start of a long one)."""
    for item in golden(model):
        if item["text"] == case or (case in LONG_PREFIXES and item["text"].startswith(case)):
            return item
    raise LookupError(case)


def subset(model):
    """The reference items of `model` this module checks."""
    return [reference(model, case) for case in CASES]


@pytest.mark.parametrize("model", [DEFAULT_MODEL, SECOND_MODEL])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_single_text_matches_the_reference(server, model, case):
    item = reference(model, case)

    reply = server.embed([item["text"]], model=model, **OPTIONS[model])

    assert reply.status == 200, reply
    body = reply.json()
    assert body["model"] == model
    assert cosine(body["embeddings"][0], item["embedding"]) >= PARITY_COSINE, item["text"][:40]
    assert body["usage"]["total_tokens"] == item["tokens"], item["text"][:40]


@pytest.mark.parametrize("model", [DEFAULT_MODEL, SECOND_MODEL])
def test_batch_matches_the_reference_item_by_item(server, model):
    items = subset(model)

    reply = server.embed([i["text"] for i in items], model=model, **OPTIONS[model])

    assert reply.status == 200, reply
    body = reply.json()
    assert len(body["embeddings"]) == len(items)
    for item, v in zip(items, body["embeddings"]):
        assert cosine(v, item["embedding"]) >= PARITY_COSINE, item["text"][:40]
    assert body["usage"]["total_tokens"] == sum(i["tokens"] for i in items)


def test_unnormalised_vectors_keep_the_references_length(server):
    # paraphrase-MiniLM-L3-v2's reference vectors are raw mean-pooled: lengths must agree too.
    item = subset(SECOND_MODEL)[1]

    v = server.embed([item["text"]], model=SECOND_MODEL, normalize=False).json()["embeddings"][0]

    assert norm(v) == pytest.approx(norm(item["embedding"]), rel=1e-3)
