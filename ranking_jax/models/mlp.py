"""Feature-based learning-to-rank scorer: a per-item MLP over ``features [B, L, F]`` -> scores ``[B, L]``.

The standard neural LTR baseline of allRank/TF-Ranking (e.g. MSLR-WEB10K, 136 features).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax import sharding


class MlpRanker(nnx.Module):
    """``score(x) = w_out · h_n``, ``h_{k+1} = dropout(act(LN(W_k h_k + b_k)))``; items scored independently."""

    def __init__(self, num_features: int, *, hidden: Sequence[int] = (256, 256, 128), dropout: float = 0.1,
                 layer_norm: bool = True, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        dims = [num_features, *hidden]
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("mlp",)), rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) if layer_norm else None for b in hidden])
        self.dropout = nnx.Dropout(dropout)
        self.out = nnx.Linear(dims[-1], 1, kernel_init=nnx.with_partitioning(init, ("mlp", None)), rngs=rngs)

    def __call__(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = sharding.constrain(jnp.asarray(batch["features"], jnp.float32), ("batch", "length", "embed"))
        for layer, norm in zip(self.layers, self.norms):
            h = layer(h)
            h = norm(h) if norm is not None else h
            h = self.dropout(jax.nn.relu(h), deterministic=deterministic or rngs is None, rngs=rngs)
        return self.out(h)[..., 0]


def mlp_ranker(*, num_features: int, hidden: Sequence[int] = (256, 256, 128), dropout: float = 0.1,
               layer_norm: bool = True, seed: int = 0) -> MlpRanker:
    with nnx.use_eager_sharding(False):
        return MlpRanker(num_features, hidden=tuple(hidden), dropout=dropout, layer_norm=layer_norm,
                         rngs=nnx.Rngs(seed))
