"""BERT_DOT bi-encoder (Hofstaetter et al. 2020; Karpukhin et al. 2020): ``s(q, d) = sim(pool(E_q(q)), pool(E_d(d)))``."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax
from flax import nnx

from ranking_jax import scoring
from ranking_jax.models import pretrained as hf
from ranking_jax.models._common import make_encoder, resolve_pretrained
from ranking_jax.models.encoder import BertConfig, Encoder, check_pooling, pool

__all__ = ["BiEncoder", "bi_encoder"]

_SIMILARITIES = ("dot", "cosine")


class BiEncoder(nnx.Module):
    """Query and document towers (shared unless ``doc_encoder`` is given) with CLS or mean pooling and
    dot or cosine similarity. ``__call__`` scores each query's ``L`` candidates ``[B, L]``;
    :meth:`score_matrix` scores every query against every document of the batch ``[B, B*L]``."""

    def __init__(self, query_encoder: Encoder, doc_encoder: Encoder | None = None, *, pooling: str = "cls",
                 similarity: str = "dot"):
        check_pooling(pooling)
        if similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
        self.query_encoder, self.doc_encoder = query_encoder, doc_encoder
        self.pooling, self.similarity = pooling, similarity

    def _encode(self, encoder, ids, mask, deterministic, rngs):
        first = 1 if self.pooling == "cls" else None
        e = pool(encoder(ids, mask, deterministic=deterministic, rngs=rngs, first_tokens=first), mask, self.pooling)
        return scoring.l2_normalize(e) if self.similarity == "cosine" else e

    def encode_queries(self, ids: jax.Array, mask: jax.Array, *, deterministic: bool = True,
                       rngs: nnx.Rngs | None = None) -> jax.Array:
        """``[..., T]`` token ids -> ``[..., D]`` (unit norm when ``similarity="cosine"``)."""
        return self._encode(self.query_encoder, ids, mask, deterministic, rngs)

    def encode_docs(self, ids: jax.Array, mask: jax.Array, *, deterministic: bool = True,
                    rngs: nnx.Rngs | None = None) -> jax.Array:
        return self._encode(self.doc_encoder or self.query_encoder, ids, mask, deterministic, rngs)

    def _both(self, batch, deterministic, rngs):
        q = self.encode_queries(batch["query_ids"], batch["query_mask"], deterministic=deterministic, rngs=rngs)
        d = self.encode_docs(batch["doc_ids"], batch["doc_mask"], deterministic=deterministic, rngs=rngs)
        return q, d

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        q, d = self._both(batch, deterministic, rngs)
        return scoring.dot(q, d)

    def score_matrix(self, batch: dict[str, Any], *, deterministic: bool = True,
                     rngs: nnx.Rngs | None = None) -> jax.Array:
        """In-batch negatives: ``[B, B*L]``, column ``b' * L + l`` is doc ``l`` of query ``b'``; mask with
        ``batch["mask"].reshape(-1)`` broadcast over rows."""
        q, d = self._both(batch, deterministic, rngs)
        return scoring.dot_matrix(q, d.reshape(-1, d.shape[-1]))

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "BiEncoder":
        return bi_encoder(pretrained=path, **kw)

    def save_pretrained(self, out_dir: str | pathlib.Path, *, source: str | pathlib.Path | None = None):
        """The (query) tower in sentence-transformers layout; a separate doc tower goes to ``out_dir/doc``."""
        source = resolve_pretrained(source)
        out = hf.save_pretrained(self.query_encoder, out_dir, source=source)
        if self.doc_encoder is not None:
            hf.save_pretrained(self.doc_encoder, pathlib.Path(out_dir) / "doc", source=source)
        return out


def bi_encoder(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
               pooling: str = "cls", similarity: str = "dot", shared: bool = True, dtype: str = "float32",
               remat: bool = False, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
               seed: int = 0, **config_overrides) -> BiEncoder:
    """BERT_DOT; ``shared=False`` gives the document tower its own copy of the initial weights."""
    with nnx.use_eager_sharding(False):
        q = make_encoder(pretrained=pretrained, config=config, dtype=dtype, remat=remat, include=include,
                         exclude=exclude, rngs=nnx.Rngs(seed), **config_overrides)
        d = None if shared else nnx.clone(q)
    return BiEncoder(q, d, pooling=pooling, similarity=similarity)
