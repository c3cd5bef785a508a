"""ColBERT late interaction (Khattab & Zaharia 2020): ``s(q, d) = sum_i max_j <W h_qi / |W h_qi|, W h_dj / |W h_dj|>``."""

from __future__ import annotations

import pathlib
import string
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax import scoring
from ranking_jax.models._common import Dense, make_encoder, resolve_pretrained
from ranking_jax.models.encoder import BertConfig, Encoder
from ranking_jax.models.pretrained import load_tokenizer

__all__ = ["ColBERT", "colbert", "punctuation_ids"]


def punctuation_ids(tokenizer) -> list[int]:
    """Vocabulary ids of the single-character punctuation tokens (ColBERT's document ``skiplist``)."""
    ids = (tokenizer.token_to_id(c) for c in string.punctuation)
    return sorted(i for i in ids if i is not None)


class ColBERT(nnx.Module):
    """Token embeddings -> linear projection (``dim``, no bias) -> L2 norm -> sum of MaxSim.

    Query ``[MASK]`` augmentation comes with the tokenization (``query_ids`` already padded with
    [MASK] and ``query_mask`` 1 there). ``skip_ids`` (e.g. :func:`punctuation_ids`) are masked out of
    the documents. MaxSim runs ``chunk_size`` candidates at a time (:func:`ranking_jax.scoring.maxsim`).
    """

    def __init__(self, encoder: Encoder, *, dim: int = 128, skip_ids: Sequence[int] = (),
                 chunk_size: int | None = 16, rngs: nnx.Rngs):
        self.encoder = encoder
        self.projection = Dense(encoder.config.hidden_size, dim, use_bias=False, rngs=rngs)
        self.skip_ids = tuple(int(i) for i in skip_ids)
        self.chunk_size = chunk_size

    def _tokens(self, ids, mask, deterministic, rngs):
        h = self.encoder(ids, mask, deterministic=deterministic, rngs=rngs)
        return scoring.l2_normalize(self.projection(h, self.encoder.compute_dtype))

    def encode_queries(self, ids, mask, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """``[..., Tq]`` -> unit token vectors ``[..., Tq, dim]`` (mask = ``mask``)."""
        return self._tokens(ids, mask, deterministic, rngs)

    def doc_token_mask(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        keep = mask.astype(bool)
        if self.skip_ids:
            keep = keep & ~jnp.isin(ids, jnp.asarray(self.skip_ids, ids.dtype))
        return keep

    def encode_docs(self, ids, mask, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """``[..., Td]`` -> ``([..., Td, dim], token mask [..., Td])`` with ``skip_ids`` masked."""
        return self._tokens(ids, mask, deterministic, rngs), self.doc_token_mask(ids, mask)

    def _both(self, batch, deterministic, rngs):
        q = self.encode_queries(batch["query_ids"], batch["query_mask"], deterministic=deterministic, rngs=rngs)
        d, d_mask = self.encode_docs(batch["doc_ids"], batch["doc_mask"], deterministic=deterministic, rngs=rngs)
        return q, d, d_mask

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        q, d, d_mask = self._both(batch, deterministic, rngs)
        return scoring.maxsim(q, d, batch["query_mask"], d_mask, chunk_size=self.chunk_size)

    def score_matrix(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """In-batch negatives ``[B, B*L]`` (column ``b' * L + l``)."""
        q, d, d_mask = self._both(batch, deterministic, rngs)
        return scoring.maxsim_matrix(q, d.reshape(-1, *d.shape[-2:]), batch["query_mask"],
                                     d_mask.reshape(-1, d_mask.shape[-1]), chunk_size=self.chunk_size)

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "ColBERT":
        return colbert(pretrained=path, **kw)


def colbert(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
            dim: int = 128, skip_ids: Sequence[int] = (), mask_punctuation: bool = False,
            chunk_size: int | None = 16, dtype: str = "float32", remat: bool = False,
            include: Sequence[str] | None = None, exclude: Sequence[str] | None = None, seed: int = 0,
            **config_overrides) -> ColBERT:
    """ColBERT; ``mask_punctuation=True`` adds the pretrained tokenizer's punctuation ids to ``skip_ids``."""
    rngs = nnx.Rngs(seed)
    skip = list(skip_ids)
    if mask_punctuation:
        path = resolve_pretrained(pretrained)
        if path is None:
            raise ValueError("mask_punctuation=True needs pretrained= (its tokenizer.json gives the ids); "
                             "pass skip_ids= for a random-init model")
        skip += punctuation_ids(load_tokenizer(path))
    with nnx.use_eager_sharding(False):
        encoder = make_encoder(pretrained=pretrained, config=config, dtype=dtype, remat=remat, include=include,
                               exclude=exclude, rngs=rngs, **config_overrides)
        return ColBERT(encoder, dim=dim, skip_ids=skip, chunk_size=chunk_size, rngs=rngs)
