"""ranking_jax.data.tokenize: TextTokenizer's encodings against the tokenizer.json of all-MiniLM-L6-v2 itself
(its template: [CLS] q [SEP] d [SEP] with type ids 0/1), truncation that keeps [SEP], ColBERT's [Q]/[D] markers and
[MASK] query augmentation."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from ranking_jax import data
from ranking_jax.assets import minilm_path


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


@pytest.fixture(scope="module")
def tokenizer():
    return data.TextTokenizer(query_length=12, doc_length=24)


def _reference_tokenizer():
    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def test_pair_encoding_matches_tokenizer_template(tokenizer):
    ref = _reference_tokenizer()
    q, d = "what is a gamma ray?", "Gamma rays are photons."
    enc = tokenizer.encode_pairs([q], [d])
    expected = ref.encode(q, d)  # the tokenizer.json post-processor: [CLS] q [SEP] d [SEP], type ids 0/1
    n = len(expected.ids)
    np.testing.assert_array_equal(enc["ids"][0, :n], expected.ids)
    np.testing.assert_array_equal(enc["type_ids"][0, :n], expected.type_ids)
    assert enc["mask"][0].tolist() == [1] * n + [0] * (tokenizer.pair_length - n)
    assert (enc["ids"][0, n:] == 0).all() and enc["ids"].shape == (1, 12 + 24 - 1)


def test_truncation_keeps_sep(tokenizer):
    ref = _reference_tokenizer()
    long_q, long_d = " ".join(WORDS), " ".join(WORDS * 3)
    q = tokenizer.encode_queries([long_q])
    assert q["ids"].shape == (1, 12) and q["mask"].all()
    assert q["ids"][0].tolist() == [101] + ref.encode(long_q, add_special_tokens=False).ids[:10] + [102]
    pair = tokenizer.encode_pairs([long_q], [long_d])
    ids, types = pair["ids"][0], pair["type_ids"][0]
    q_part = [101] + ref.encode(long_q, add_special_tokens=False).ids[:10] + [102]
    assert ids[:12].tolist() == q_part and ids[-1] == 102 and pair["mask"][0].all()
    assert ids[12:-1].tolist() == ref.encode(long_d, add_special_tokens=False).ids[:35 - 13]
    assert types.tolist() == [0] * 12 + [1] * 23


def test_colbert_markers_and_mask_augmentation():
    tok = data.TextTokenizer(query_length=10, doc_length=8, colbert=True)
    ref = _reference_tokenizer()
    q = tok.encode_queries(["gamma ray"])
    body = ref.encode("gamma ray", add_special_tokens=False).ids
    expected = [101, 1] + body + [102]  # [CLS] [unused0]=[Q] ... [SEP], then [MASK] (103) padding
    assert q["ids"][0].tolist() == expected + [103] * (10 - len(expected))
    assert q["mask"][0].tolist() == [1] * 10  # [MASK] positions take part in MaxSim
    d = tok.encode_docs(["gamma ray"])
    assert d["ids"][0].tolist() == [101, 2] + body + [102] + [0] * (8 - 3 - len(body))
    assert d["mask"][0].tolist() == [1] * (3 + len(body)) + [0] * (8 - 3 - len(body))
