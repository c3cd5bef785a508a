"""ColBERT late interaction (Khattab & Zaharia 2020): ``s(q, d) = sum_i max_j <W h_qi / |W h_qi|, W h_dj / |W h_dj|>``."""

from __future__ import annotations

import pathlib
import string
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax import scoring
from ranking_jax.models._common import Dense, Scorer, make_encoder, resolve_pretrained
from ranking_jax.models.encoder import BertConfig, Encoder
from ranking_jax.models.pretrained import load_tokenizer
from ranking_jax.registry import register

__all__ = ["ColBERT", "colbert", "punctuation_ids"]


def punctuation_ids(tokenizer) -> list[int]:
    """Vocabulary ids of the single-character punctuation tokens (ColBERT's document ``skiplist``)."""
    ids = (tokenizer.token_to_id(c) for c in string.punctuation)
    return sorted(i for i in ids if i is not None)


class ColBERT(Scorer, nnx.Module):
    """Token embeddings -> linear projection (``dim``, no bias) -> L2 norm -> sum of MaxSim.

    Query ``[MASK]`` augmentation comes with the tokenization (``query_ids`` already padded with
    [MASK] and ``query_mask`` 1 there). ``skip_ids`` (e.g. :func:`punctuation_ids`) are masked out of
    the documents. MaxSim runs ``chunk_size`` candidates at a time (:func:`ranking_jax.scoring.maxsim`).
    """
    OUTPUTS = ("scores", "score_matrix")

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

    def represent(self, batch: dict[str, Any], *, deterministic: bool = True,
                  rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """Unit query token vectors ``[B, Tq, dim]`` and document token vectors ``[B, L, Td, dim]``."""
        return {"queries": self.encode_queries(batch["query_ids"], batch["query_mask"], deterministic=deterministic,
                                               rngs=rngs),
                "docs": self._tokens(batch["doc_ids"], batch["doc_mask"], deterministic, rngs)}

    def outputs(self, reps: dict[str, jax.Array], batch: dict[str, Any],
                kinds: Sequence[str] = ("scores",)) -> dict[str, jax.Array]:
        """MaxSim ``scores [B, L]`` and the in-batch ``score_matrix [B, B*L]`` (column ``b' * L + l``)."""
        q, d = reps["queries"], reps["docs"]
        q_mask, d_mask = batch["query_mask"], self.doc_token_mask(batch["doc_ids"], batch["doc_mask"])
        make = {"scores": lambda: scoring.maxsim(q, d, q_mask, d_mask, chunk_size=self.chunk_size),
                "score_matrix": lambda: scoring.maxsim_matrix(q, d.reshape(-1, *d.shape[-2:]), q_mask,
                                                              d_mask.reshape(-1, d_mask.shape[-1]),
                                                              chunk_size=self.chunk_size)}
        return {k: make[k]() for k in kinds}

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        return self.outputs(self.represent(batch, deterministic=deterministic, rngs=rngs), batch)["scores"]

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "ColBERT":
        return colbert(pretrained=path, **kw)


@register("models.colbert", outputs=ColBERT.OUTPUTS)
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
