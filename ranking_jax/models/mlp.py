"""MLPs over feature vectors: a per-item LTR scorer and an embedding network for metric learning.

``MlpRanker``: ``features [B, L, F]`` -> scores ``[B, L]``, the standard neural LTR baseline of
allRank/TF-Ranking (e.g. MSLR-WEB10K, 136 features). ``MlpEmbedder``: ``images [B, F]`` (flattened) ->
L2-normalized embeddings ``[B, D]``, the small-scale backbone of deep metric learning (cosine geometry,
as the TCM regularizer and OPIS expect).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.linen import with_logical_constraint as constrain

from ranking_jax import scoring
from ranking_jax.models._common import Scorer
from ranking_jax.registry import register

__all__ = ["MlpRanker", "mlp_ranker", "MlpEmbedder", "mlp_embedder"]


class _Trunk(nnx.Module):
    """``h_{k+1} = dropout(act(LN(W_k h_k + b_k)))`` over the last axis; ``self.out`` is the subclass's head."""

    def __init__(self, num_features: int, *, hidden: Sequence[int], dropout: float, layer_norm: bool,
                 num_outputs: int, out_names: tuple, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        dims = [num_features, *hidden]
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("mlp",)), rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) if layer_norm else None for b in hidden])
        self.dropout = nnx.Dropout(dropout)
        self.out = nnx.Linear(dims[-1], num_outputs, kernel_init=nnx.with_partitioning(init, out_names), rngs=rngs)

    def _forward(self, h: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        for layer, norm in zip(self.layers, self.norms):
            h = layer(h)
            h = norm(h) if norm is not None else h
            h = self.dropout(jax.nn.relu(h), deterministic=deterministic or rngs is None, rngs=rngs)
        return self.out(h)


class MlpRanker(Scorer, _Trunk):
    """``score(x) = w_out · h_n``, ``h_{k+1} = dropout(act(LN(W_k h_k + b_k)))``; items scored independently."""

    def __init__(self, num_features: int, *, hidden: Sequence[int] = (256, 256, 128), dropout: float = 0.1,
                 layer_norm: bool = True, rngs: nnx.Rngs):
        super().__init__(num_features, hidden=hidden, dropout=dropout, layer_norm=layer_norm, num_outputs=1,
                         out_names=("mlp", None), rngs=rngs)

    def __call__(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = constrain(jnp.asarray(batch["features"], jnp.float32), ("batch", "length", "embed"))
        return self._forward(h, deterministic=deterministic, rngs=rngs)[..., 0]


class MlpEmbedder(Scorer, _Trunk):
    """``e(x) = W_out h_n / ||W_out h_n||`` (no normalization with ``normalize=False``) of ``batch[input_key]``
    ``[B, F]`` -> ``[B, dim]``."""

    def __init__(self, num_features: int, *, hidden: Sequence[int] = (256,), dim: int = 64, normalize: bool = True,
                 dropout: float = 0.0, layer_norm: bool = True, input_key: str = "images", rngs: nnx.Rngs):
        super().__init__(num_features, hidden=hidden, dropout=dropout, layer_norm=layer_norm, num_outputs=dim,
                         out_names=("mlp", "embed"), rngs=rngs)
        self.normalize, self.input_key = normalize, input_key

    OUTPUTS = ("embeddings",)

    def represent(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        return {"embeddings": self(batch, deterministic=deterministic, rngs=rngs)}

    def __call__(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = constrain(jnp.asarray(batch[self.input_key], jnp.float32), ("batch", "embed"))
        e = constrain(self._forward(h, deterministic=deterministic, rngs=rngs), ("batch", "embed"))
        return scoring.l2_normalize(e) if self.normalize else e


@register("models.mlp_ranker", outputs=MlpRanker.OUTPUTS)
def mlp_ranker(*, num_features: int, hidden: Sequence[int] = (256, 256, 128), dropout: float = 0.1,
               layer_norm: bool = True, seed: int = 0) -> MlpRanker:
    with nnx.use_eager_sharding(False):
        return MlpRanker(num_features, hidden=tuple(hidden), dropout=dropout, layer_norm=layer_norm,
                         rngs=nnx.Rngs(seed))


@register("models.mlp_embedder", outputs=MlpEmbedder.OUTPUTS)
def mlp_embedder(*, num_features: int, hidden: Sequence[int] = (256,), dim: int = 64, normalize: bool = True,
                 dropout: float = 0.0, layer_norm: bool = True, input_key: str = "images",
                 seed: int = 0) -> MlpEmbedder:
    """An :class:`MlpEmbedder` initialized from ``seed`` (registry name ``models.mlp_embedder``)."""
    with nnx.use_eager_sharding(False):
        return MlpEmbedder(num_features, hidden=tuple(hidden), dim=dim, normalize=normalize, dropout=dropout,
                           layer_norm=layer_norm, input_key=input_key, rngs=nnx.Rngs(seed))
