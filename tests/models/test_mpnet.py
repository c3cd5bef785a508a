"""MPNet (all-mpnet-base-v2) as a config of the encoder: relative-position buckets against MPNet's reference
(PyTorch) and hand-derived values, sentence-transformers parity on awkward inputs (fixture produced by
``SentenceTransformer(DIR).encode``), the model's own pair template, the families that accept it, export."""

import dataclasses
import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from helpers import ROOT
from ranking_jax import TextEncoder, registry
from ranking_jax.assets import minilm_path, mpnet_path
from ranking_jax.data import TextTokenizer
from ranking_jax.models import pretrained as hf
from ranking_jax.models.encoder import relative_position_buckets

FIXTURE = ROOT / "tests" / "fixtures" / "mpnet_reference.json"


@pytest.fixture(scope="module")
def reference():
    ref = json.loads(FIXTURE.read_text())
    return ref["sentences"], np.asarray(ref["embeddings"], np.float64), ref


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder("mpnet", batch_size=4)


def test_relative_position_buckets():
    b = relative_position_buckets(400)
    # key - query = 0, +1, -1, -7, -8 (first log bucket), -128 and beyond (last), +8, +200
    assert [b[200, 200], b[200, 201], b[200, 199], b[200, 193], b[200, 192], b[200, 72], b[399, 0]] == \
        [0, 17, 1, 7, 8, 15, 15]
    assert [b[0, 8], b[0, 200]] == [24, 31]
    # log region: 8 + int(log(n / 8) / log(16) * 8), n = 20 -> 8 + int(2.643...) = 10
    assert b[100, 80] == 8 + int(np.log(20 / 8) / np.log(16) * 8) == 10
    row0, row399 = json.loads(FIXTURE.read_text())["relative_position_buckets_400_row0_row399_diag"]
    np.testing.assert_array_equal(b[0], row0)
    np.testing.assert_array_equal(b[399], row399)


def test_parity_with_sentence_transformers_on_awkward_inputs(encoder, reference):
    sentences, ref, raw = reference
    assert "" in sentences and max(raw["token_lengths"]) == 384  # empty, non-Latin, emoji and truncated inputs
    s = encoder.settings
    assert (s.max_length, s.pooling, s.normalize, s.lowercase) == (384, "mean", True, False)
    ours = encoder.encode(sentences)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_pair_template_is_the_tokenizers_own():
    for path in (mpnet_path(), minilm_path()):  # <s> q </s></s> d </s> and [CLS] q [SEP] d [SEP] with types 0/1
        tok = TextTokenizer(path, query_length=12, doc_length=30)
        raw = Tokenizer.from_file(str(path / "tokenizer.json"))
        raw.no_padding()
        raw.no_truncation()
        queries, docs = ["what is mpnet?", "ümlaut 🚀"], ["a masked and permuted pre-training model", ""]
        pairs = tok.encode_pairs(queries, docs)
        for i, (q, d) in enumerate(zip(queries, docs)):
            want = raw.encode(q, d)
            n = int(pairs["mask"][i].sum())
            assert pairs["ids"][i, :n].tolist() == want.ids
            assert pairs["type_ids"][i, :n].tolist() == want.type_ids


@pytest.mark.parametrize("family", ["cross_encoder", "colbert"])
def test_families_accept_mpnet(family):
    model = registry.lookup(f"models.{family}")(pretrained="mpnet")
    assert model.encoder.config.model_type == "mpnet"
    tok = TextTokenizer(mpnet_path(), query_length=8, doc_length=16, colbert=family == "colbert")
    if family == "cross_encoder":
        pairs = tok.encode_pairs(["mpnet"] * 2, ["relative position buckets", "nothing"])
        batch = {f"pair_{k}": v[None] for k, v in pairs.items()}
    else:
        q, d = tok.encode_queries(["mpnet"]), tok.encode_docs(["relative position buckets", "nothing"])
        batch = {"query_ids": q["ids"], "query_mask": q["mask"], "doc_ids": d["ids"][None],
                 "doc_mask": d["mask"][None]}
    scores = np.asarray(model(batch))
    assert scores.shape == (1, 2) and np.isfinite(scores).all()


def test_bi_encoder_export_reloads_as_mpnet_with_the_same_vectors(reference, tmp_path):
    sentences, ref, _ = reference
    model = registry.lookup("models.bi_encoder")(pretrained="mpnet")
    assert (model.pooling, model.similarity) == ("mean", "cosine")  # from the directory's modules
    model.save_pretrained(tmp_path / "out", source="mpnet")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["architectures"] == ["MPNetModel"]
    assert "token_type_embeddings" not in " ".join(hf.load_checkpoint(tmp_path / "out")[1])
    want = dataclasses.replace(hf.sentence_settings(mpnet_path()), source=str(tmp_path / "out" / "modules.json"))
    assert hf.sentence_settings(tmp_path / "out") == want
    again = TextEncoder(tmp_path / "out", batch_size=4).encode(sentences[:3])
    np.testing.assert_allclose(again, ref[:3], atol=1e-5)
