"""MiniLM cross-encoder (BERT_CAT, [CLS] q [SEP] d -> linear) re-ranking BM25 candidates.

    python -m ranking_jax.main --config configs/cross_encoder.py:runlocal --workdir /tmp/ce
    python -m ranking_jax.main --config configs/cross_encoder.py:scifact --workdir /tmp/ce_scifact

Args (comma-separated): runlocal (2-core CPU smoke run), scifact (../shared/data/scifact, train/test qrels),
steps=N. Default collection: the ChatterBot Q->A corpus (PyPI). Listwise softmax loss over 1 positive +
7 BM25 negatives; swap with --config.loss=losses.pairwise_logistic_loss etc.
Expected: not measured at this config yet. The quickstart's cross-encoder run (configs/quickstart.py: dense
first stage, shorter lengths, 120 steps) took held-out nDCG@10 from 0.170 to 0.389 (BENCHMARKS.md).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, **defaults.TEXT_ARGS)
    c = defaults.text_variant(defaults.text_ranking("cross_encoder"), a)
    c.model.dtype = "float32"
    if a.runlocal:
        c.model.num_hidden_layers = 2
    return c
