"""scripts/score_teacher.py: Margin-MSE teacher files scored by a model, checked against a NumPy oracle
(a bag-of-words nnx module whose score is recomputed by hand) and against a direct model call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from helpers import load_script, teacher_collection
from ranking_jax import data

tfds.disable_progress_bar()


class BagOfWords(nnx.Module):
    """score = sum of a weight per token over the document part of [CLS] q [SEP] d [SEP]."""

    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (30522,)))

    def __call__(self, batch, *, deterministic=True, rngs=None):
        keep = batch["pair_mask"] * batch["pair_type_ids"]
        return jnp.sum(self.w[...][batch["pair_ids"]] * keep, axis=-1)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return teacher_collection(tmp_path_factory)


def test_scores_match_numpy_oracle(collection, tmp_path):
    script = load_script("score_teacher")
    src = collection["src"]
    model = BagOfWords(nnx.Rngs(0))
    tok = data.TextTokenizer(query_length=8, doc_length=16)
    triples = [(0, 0, 3), (1, 1, 4), (2, 5, 8), (0, 6, 9), (1, 2, 7)]
    scores = script.score_triples(model, triples, family="cross_encoder", queries=data.Texts(src["queries"]),
                                  corpus=data.Texts(src["corpus"]), batch_size=2, tokenizer=tok)
    w = np.asarray(model.w[...])
    qtexts, dtexts = data.texts(src["queries"]), data.texts(src["corpus"])
    for (q, p, n), row in zip(triples, scores):
        for d, s in zip((p, n), row):
            enc = tok.encode_pairs([qtexts[q]], [dtexts[d]])
            np.testing.assert_allclose(s, (w[enc["ids"][0]] * enc["mask"][0] * enc["type_ids"][0]).sum(), rtol=1e-5)
    qids = [f"q{i}" for i in range(3)]
    dids = [f"doc{i}" for i in range(10)]
    path = data.write_teacher_triples(tmp_path / "teacher.tsv", triples, scores, query_ids=qids, doc_ids=dids)
    rows = list(data.read_teacher_triples(path))
    assert [r[3:] for r in rows] == [(qids[q], dids[p], dids[n]) for q, p, n in triples]
    np.testing.assert_allclose([r[1:3] for r in rows], scores, atol=1e-6)
    # the file feeds distillation lists back into the pipelines
    records = data.teacher_lists((data.IdIndex(qids)[q], data.IdIndex(dids)[p], data.IdIndex(dids)[n], sp, sn)
                                 for _, sp, sn, q, p, n in rows)
    np.testing.assert_allclose(records[2]["teacher_scores"], scores[2], atol=1e-6)


def test_cli_with_cross_encoder(collection, tmp_path):
    """End to end with the codebase's cross-encoder (tiny random config) and a BM25 run."""
    script = load_script("score_teacher")
    src = collection["src"]
    doc_ids = [src["corpus"][i]["doc_id"].decode() for i in range(10)]
    qids = [src["queries"][i]["query_id"].decode() for i in range(3)]
    top, scores = data.BM25(analyze=str.split).index(data.texts(src["corpus"])).search(data.texts(src["queries"]),
                                                                                      k=10)
    run = data.write_run(tmp_path / "run.trec", {q: {doc_ids[d]: float(v) for d, v in zip(t[t >= 0], s[t >= 0])}
                                                 for q, t, s in zip(qids, top, scores)})
    spec = ("models.cross_encoder(config={'hidden_size': 16, 'num_hidden_layers': 1, 'num_attention_heads': 2, "
            "'intermediate_size': 32}, seed=1)")
    out = tmp_path / "teacher.tsv"
    script.main(["--model", spec, "--config", "custom", "--data_dir", str(collection["data_dir"]),
                 "--manual_dir", str(collection["root"]), "--run", str(run), "--split", "train",
                 "--per_query", "2", "--depth", "5", "--query_length", "8", "--doc_length", "16", "--out", str(out),
                 "--batch_size", "4"])
    rows = list(data.read_teacher_triples(out))
    assert len(rows) == 6  # 3 training queries x 2 hard negatives
    from ranking_jax import registry
    model = registry.lookup(spec)()
    tok = data.TextTokenizer(query_length=8, doc_length=16)
    qtexts, dtexts = data.texts(src["queries"]), data.texts(src["corpus"])
    _, sp, sn, q, p, n = rows[0]
    enc = tok.encode_pairs([qtexts[qids.index(q)]] * 2, [dtexts[doc_ids.index(p)], dtexts[doc_ids.index(n)]])
    batch = {f"pair_{k}": v[None] for k, v in enc.items()}
    np.testing.assert_allclose(np.asarray(model(batch))[0], [sp, sn], atol=1e-5)
