"""MiniLM ColBERT (token embeddings -> 128-d projection -> L2 norm -> sum of MaxSim, [Q]/[D] markers and
query [MASK] augmentation) re-ranking BM25 candidates.

    python -m ranking_jax.main --config configs/colbert.py:runlocal --workdir /tmp/colbert

Args: runlocal, scifact, steps=N. The projection is new (randomly initialized); the encoder is MiniLM.
Expected: not measured yet (the 2-step runlocal run is tested).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, **defaults.TEXT_ARGS)
    c = defaults.text_variant(defaults.text_ranking("colbert"), a)
    c.model.dim = 128
    c.model.chunk_size = 16
    if a.runlocal:
        c.model.num_hidden_layers = 2
    return c
