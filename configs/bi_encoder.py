"""MiniLM bi-encoder (BERT_DOT: mean pooling, dot product) trained listwise on BM25 hard negatives;
evaluated by dense retrieval over the whole corpus and by re-ranking BM25's top 50.

    python -m ranking_jax.main --config configs/bi_encoder.py:runlocal --workdir /tmp/be
    python -m ranking_jax.main --config configs/bi_encoder.py:scifact --workdir /tmp/be_scifact

Args: runlocal, scifact (../shared/data/scifact), cls (CLS pooling), cosine, separate (two towers), steps=N.
In-batch negatives: swap the loss for the score-matrix form with --config.loss=... (see losses.contrastive).
Expected: not measured at this config yet. The quickstart's bi-encoder run (configs/quickstart.py, 120 steps)
took held-out retrieval nDCG@10 from zero-shot MiniLM's 0.466 to 0.495 (BENCHMARKS.md).
"""

from ranking_jax import defaults


OBJECTIVES = {  # arg -> (loss, similarity)
    "inbatch": ("losses.infonce_loss(temperature=0.05)", "cosine"),  # sentence-transformers' MNRL, scale 20
    "e2rank": ("losses.e2rank_loss", "cosine"),  # InfoNCE (tau 0.03) + 2 * RankNet(10 * cos) on pseudo-queries
}


def get_config(arg=None):
    a = defaults.parse_arg(arg, cls=False, cosine=False, separate=False, inbatch=False, e2rank=False,
                           **defaults.TEXT_ARGS)
    c = defaults.text_variant(defaults.text_ranking("bi_encoder"), a)
    c.model.pooling = "cls" if a.cls else "mean"
    c.model.similarity = "cosine" if a.cosine else "dot"
    c.model.shared = not a.separate
    c.optimizer.learning_rate = 2e-5
    chosen = [name for name in OBJECTIVES if a[name]]
    if len(chosen) > 1:
        raise ValueError(f"config args {chosen}: pick one objective of {sorted(OBJECTIVES)}")
    if chosen:
        c.name = f"bi_encoder_{chosen[0]}"
        c.loss, c.model.similarity = OBJECTIVES[chosen[0]]
    if a.runlocal:
        c.model.num_hidden_layers = 2
    return c
