"""PreTT (MacAvaney et al., SIGIR 2020): the lower ``split_layer`` BERT layers encode the query and the
document separately (document states can be precomputed), the upper layers run on their concatenation
``[CLS] q [SEP] | d [SEP]`` and a linear head reads [CLS]."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax.models._common import Dense, Scorer, make_encoder
from ranking_jax.models.encoder import BertConfig, Encoder, dropout
from ranking_jax.registry import register

__all__ = ["PreTT", "prett"]


class PreTT(Scorer, nnx.Module):
    """Query states are computed once per query and shared by its ``L`` candidates.

    Token types: 0 for the query, 1 for the document. Document positions continue after the padded
    query (``Tq - 1 + j`` for document token ``j``; its [CLS] is dropped), so ``split_layer=0`` equals the
    cross-encoder on the concatenated pair.
    """

    def __init__(self, encoder: Encoder, *, split_layer: int, rngs: nnx.Rngs):
        n = encoder.config.num_hidden_layers
        if not 0 <= split_layer <= n:
            raise ValueError(f"split_layer must be in [0, {n}] (the encoder's layers), got {split_layer}")
        self.encoder, self.split_layer = encoder, split_layer
        self.head = Dense(encoder.config.hidden_size, 1, rngs=rngs)

    def encode_docs(self, ids: jax.Array, mask: jax.Array, *, query_length: int, deterministic: bool = True,
                    rngs: nnx.Rngs | None = None) -> jax.Array:
        """Lower-layer document states ``[..., Td, D]`` (precomputable for a fixed ``query_length``)."""
        lead, t = ids.shape[:-1], ids.shape[-1]
        ids2, mask2 = ids.reshape(-1, t), mask.reshape(-1, t).astype(bool)
        x = self.encoder.embed(ids2, jnp.ones_like(ids2), position_offset=query_length - 1,
                               deterministic=deterministic, rngs=rngs)
        x = self.encoder.run_layers(x, mask2, slice(0, self.split_layer), deterministic=deterministic, rngs=rngs)
        return x.reshape(*lead, t, x.shape[-1])

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        q_ids, q_mask = batch["query_ids"], batch["query_mask"].astype(bool)
        d_ids, d_mask = batch["doc_ids"], batch["doc_mask"].astype(bool)
        b, l, td = d_ids.shape
        tq = q_ids.shape[-1]
        enc = self.encoder
        q = enc.embed(q_ids, jnp.zeros_like(q_ids), deterministic=deterministic, rngs=rngs)
        q = enc.run_layers(q, q_mask, slice(0, self.split_layer), deterministic=deterministic, rngs=rngs)
        d = self.encode_docs(d_ids, d_mask, query_length=tq, deterministic=deterministic, rngs=rngs)
        x = jnp.concatenate([jnp.broadcast_to(q[:, None], (b, l, tq, q.shape[-1])), d[:, :, 1:]], axis=2)
        mask = jnp.concatenate([jnp.broadcast_to(q_mask[:, None], (b, l, tq)), d_mask[:, :, 1:]], axis=2)
        x = x.reshape(b * l, tq + td - 1, -1)
        x = enc.run_layers(x, mask.reshape(b * l, -1), slice(self.split_layer, None), deterministic=deterministic,
                           rngs=rngs, first_tokens=1)
        cls = dropout(x[:, 0], enc.config.hidden_dropout_prob, rngs, deterministic)
        return self.head(cls)[:, 0].reshape(b, l)  # f32 head, as CrossEncoder

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "PreTT":
        return prett(pretrained=path, **kw)


@register("models.prett", outputs=PreTT.OUTPUTS)
def prett(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
          split_layer: int | None = None, dtype: str = "float32", remat: bool = False,
          include: Sequence[str] | None = None, exclude: Sequence[str] | None = None, seed: int = 0,
          **config_overrides) -> PreTT:
    """PreTT; ``split_layer`` defaults to half the encoder's layers."""
    rngs = nnx.Rngs(seed)
    with nnx.use_eager_sharding(False):
        encoder = make_encoder(pretrained=pretrained, config=config, dtype=dtype, remat=remat, include=include,
                               exclude=exclude, rngs=rngs, **config_overrides)
        split = encoder.config.num_hidden_layers // 2 if split_layer is None else split_layer
        return PreTT(encoder, split_layer=split, rngs=rngs)
