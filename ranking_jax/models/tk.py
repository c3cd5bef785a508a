"""TK, transformer-kernel ranking (Hofstaetter, Zlabinger & Hanbury, ECAI 2020; matchmaker ``ECAI20_TK``).

Word embeddings ``e`` + sinusoidal positions -> a light transformer (post-LN, ReLU, no dropout) ->
``e' = m e + (1 - m) ctx(e)`` -> cosine match matrix ``M_ij`` -> RBF kernel pooling
``phi_k = sum_i log(a_k sum_j K_k(M_ij))`` -> ``s = w^T phi``. Kernels: ``mu`` in
{1.0, 0.9, 0.7, ..., -0.9}, ``sigma`` 0.1 (the exact-match kernel's sigma is settable, KNRM uses 0.001).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen import with_logical_constraint as constrain

from ranking_jax import scoring
from ranking_jax.models import pretrained as hf
from ranking_jax.models._common import Scorer, resolve_pretrained
from ranking_jax.models.encoder import TransformerLayer, _param
from ranking_jax.registry import register

__all__ = ["TK", "tk", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, *, offset: int = 0, min_timescale: float = 1.0,
                         max_timescale: float = 1.0e4) -> np.ndarray:
    """``[sin(t / s_i) ..., cos(t / s_i) ...]`` for ``t = offset .. offset + length - 1`` (AllenNLP layout)."""
    n = dim // 2
    inv = min_timescale * np.exp(-np.arange(n) * math.log(max_timescale / min_timescale) / max(n - 1, 1))
    t = np.arange(offset, offset + length, dtype=np.float64)[:, None] * inv[None]
    out = np.concatenate([np.sin(t), np.cos(t)], axis=1)
    if dim % 2:
        out = np.concatenate([out, np.zeros((length, 1))], axis=1)
    return out.astype(np.float32)


class TK(Scorer, nnx.Module):
    """TK over ``batch["query_ids"|"query_mask"]`` ``[B, Tq]`` and ``batch["doc_ids"|"doc_mask"]`` ``[B, L, Td]``."""

    def __init__(self, vocab_size: int, embed_dim: int, *, num_layers: int = 2, num_heads: int = 12,
                 mlp_dim: int = 384, kernel_mus: Sequence[float] = scoring.TK_KERNEL_MUS,
                 kernel_sigma: float = 0.1, exact_match_sigma: float | None = None, diff_positions: bool = True,
                 mix_context: bool = True, rngs: nnx.Rngs):
        self.embeddings = _param(rngs, nnx.initializers.normal(stddev=0.02), (vocab_size, embed_dim),
                                 ("vocab", "embed"))
        self.layers = nnx.List([TransformerLayer(embed_dim, num_heads, mlp_dim, eps=1e-5, activation="relu",
                                                 rngs=rngs) for _ in range(num_layers)])
        self.mixer = nnx.Param(jnp.full((), 0.5, jnp.float32))
        n = len(kernel_mus)
        self.kernel_mus = tuple(float(m) for m in kernel_mus)
        sigmas = [float(kernel_sigma)] * n
        if exact_match_sigma is not None:
            sigmas[0] = float(exact_match_sigma)
        self.kernel_sigmas = tuple(sigmas)
        self.kernel_alpha = nnx.Param(jnp.ones((n,), jnp.float32))
        self.kernel_weights = nnx.Param(nnx.initializers.uniform(scale=0.028)(rngs.params(), (n,), jnp.float32)
                                        - 0.014)
        self.diff_positions, self.mix_context = diff_positions, mix_context

    def contextualize(self, ids: jax.Array, mask: jax.Array, *, position_offset: int = 0) -> jax.Array:
        """``[..., T]`` -> ``[..., T, D]``: embeddings mixed with their transformer context."""
        lead, t = ids.shape[:-1], ids.shape[-1]
        ids, mask = ids.reshape(-1, t), mask.reshape(-1, t).astype(bool)
        e = jnp.take(self.embeddings[...], ids, axis=0)
        x = e + sinusoidal_positions(t, e.shape[-1], offset=position_offset)
        x = constrain(x, ("batch", "length", "embed"))
        for layer in self.layers:
            x = layer(x, mask)
        if self.mix_context:
            x = self.mixer[...] * e + (1.0 - self.mixer[...]) * x
        return x.reshape(*lead, t, x.shape[-1])

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        del deterministic, rngs  # TK's contextualizer runs without dropout (ECAI20_TK: dropout=0)
        q = self.contextualize(batch["query_ids"], batch["query_mask"])
        d = self.contextualize(batch["doc_ids"], batch["doc_mask"], position_offset=500 if self.diff_positions else 0)
        sim = jnp.einsum("bqe,blte->blqt", scoring.l2_normalize(q), scoring.l2_normalize(d))
        phi = scoring.kernel_pooling(sim, batch["query_mask"][:, None, :], batch["doc_mask"], mus=self.kernel_mus,
                                     sigmas=self.kernel_sigmas, scale=self.kernel_alpha[...])
        return phi @ self.kernel_weights[...]


@register("models.tk", outputs=TK.OUTPUTS)
def tk(*, pretrained: str | pathlib.Path | None = None, vocab_size: int = 30522, embed_dim: int = 384,
       num_layers: int = 2, num_heads: int = 12, mlp_dim: int = 384,
       kernel_mus: Sequence[float] = scoring.TK_KERNEL_MUS, kernel_sigma: float = 0.1,
       exact_match_sigma: float | None = None, diff_positions: bool = True, mix_context: bool = True,
       seed: int = 0) -> TK:
    """TK; with ``pretrained`` (dir or ``"minilm"``) its word embeddings initialize TK's embeddings."""
    path = resolve_pretrained(pretrained)
    word = None
    if path is not None:
        _, tensors = hf.load_checkpoint(path)
        word = np.asarray(tensors[hf._detect_prefix(tensors) + "embeddings.word_embeddings.weight"], np.float32)
        vocab_size, embed_dim = word.shape
    with nnx.use_eager_sharding(False):
        model = TK(vocab_size, embed_dim, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim,
                   kernel_mus=kernel_mus, kernel_sigma=kernel_sigma, exact_match_sigma=exact_match_sigma,
                   diff_positions=diff_positions, mix_context=mix_context, rngs=nnx.Rngs(seed))
    if word is not None:
        model.embeddings.set_value(jnp.asarray(word))
    return model
