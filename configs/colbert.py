"""MiniLM ColBERT (token embeddings -> 128-d projection -> L2 norm -> sum of MaxSim, [Q]/[D] markers and
query [MASK] augmentation) re-ranking BM25 candidates.

    python -m ranking_jax.main --config configs/colbert.py:runlocal --workdir /tmp/colbert

Args: runlocal, scifact, steps=N. The projection is new (randomly initialized); the encoder is MiniLM.
Expected (scifact, 300 steps): re-rank nDCG@10 above BM25's on the held-out queries.
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, scifact=False, steps=300)
    c = defaults.text_ranking("colbert")
    c.model.dim = 128
    c.model.chunk_size = 16
    c.train.num_steps = a.steps
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    if a.scifact:
        c.data.collection = "../shared/data/scifact"
        c.data.max_eval_queries = 100

    if a.runlocal:
        c.train.num_steps = 2
        c.train.eval_every = 2
        c.train.log_every = 1
        c.train.checkpoint_every = 2
        c.optimizer.warmup_steps = 0
        c.data.update({"list_size": 4, "batch_size": 8, "max_eval_queries": 8, "eval_depth": 8,
                       "eval_list_size": 8, "eval_batch_size": 8, "doc_length": 48, "query_length": 16})
        c.model.num_hidden_layers = 2
    return c
