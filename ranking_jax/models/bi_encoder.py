"""BERT_DOT bi-encoder (Hofstaetter et al. 2020; Karpukhin et al. 2020): ``s(q, d) = sim(pool(E_q(q)), pool(E_d(d)))``."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax
from flax import nnx

from ranking_jax import scoring
from ranking_jax.models import pretrained as hf
from ranking_jax.models._common import Scorer, make_encoder, resolve_pretrained
from ranking_jax.models.encoder import BertConfig, Encoder, check_pooling, pool
from ranking_jax.registry import register

__all__ = ["BiEncoder", "bi_encoder"]

_SIMILARITIES = ("dot", "cosine")


class BiEncoder(Scorer, nnx.Module):
    """Query and document towers (shared unless ``doc_encoder`` is given) with CLS or mean pooling and
    dot or cosine similarity, times ``scale`` (e.g. 20 with cosine, as Hofstätter et al.'s BERT_DOT students and
    sentence-transformers' losses; keep 1 for a loss with its own temperature). ``__call__`` scores each query's
    ``L`` candidates ``[B, L]``; :meth:`outputs` also gives the in-batch ``score_matrix`` and E2Rank's
    ``pseudo_scores``."""
    OUTPUTS = ("scores", "score_matrix", "pseudo_scores")

    def __init__(self, query_encoder: Encoder, doc_encoder: Encoder | None = None, *, pooling: str = "cls",
                 similarity: str = "dot", scale: float = 1.0):
        check_pooling(pooling)
        if similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
        self.query_encoder, self.doc_encoder = query_encoder, doc_encoder
        self.pooling, self.similarity, self.scale = pooling, similarity, float(scale)

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

    def represent(self, batch: dict[str, Any], *, deterministic: bool = True,
                  rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """Query ``[B, D]`` and document ``[B, L, D]`` vectors (and E2Rank's pseudo-query ``[B, D]`` when the batch
        has ``pseudo_ids``: the query tower over the query and its first-stage top documents)."""
        reps = {"queries": self.encode_queries(batch["query_ids"], batch["query_mask"], deterministic=deterministic,
                                               rngs=rngs),
                "docs": self.encode_docs(batch["doc_ids"], batch["doc_mask"], deterministic=deterministic, rngs=rngs)}
        if "pseudo_ids" in batch:
            reps["pseudo"] = self.encode_queries(batch["pseudo_ids"], batch["pseudo_mask"],
                                                 deterministic=deterministic, rngs=rngs)
        return reps

    def outputs(self, reps: dict[str, jax.Array], batch: dict[str, Any],
                kinds: Sequence[str] = ("scores",)) -> dict[str, jax.Array]:
        """``scores [B, L]``, ``score_matrix [B, B*L]`` (column ``b' * L + l`` is document ``l`` of query ``b'``)
        and ``pseudo_scores [B, L]``, all by the model's similarity."""
        q, d = reps["queries"], reps["docs"]
        make = {"scores": lambda: scoring.dot(q, d),
                "score_matrix": lambda: scoring.dot_matrix(q, d.reshape(-1, d.shape[-1])),
                "pseudo_scores": lambda: scoring.dot(reps["pseudo"], d)}
        return {k: make[k]() * self.scale if self.scale != 1.0 else make[k]() for k in kinds}

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        return self.outputs(self.represent(batch, deterministic=deterministic, rngs=rngs), batch)["scores"]

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "BiEncoder":
        return bi_encoder(pretrained=path, **kw)

    def save_pretrained(self, out_dir: str | pathlib.Path, *, source: str | pathlib.Path | None = None):
        """The (query) tower in sentence-transformers layout; a separate doc tower goes to ``out_dir/doc``."""
        source = resolve_pretrained(source)
        for encoder, folder in ((self.query_encoder, pathlib.Path(out_dir)),
                                (self.doc_encoder, pathlib.Path(out_dir) / "doc")):
            if encoder is not None:
                hf.save_pretrained(encoder, folder, source=source)
                hf.write_sentence_modules(folder, pooling=self.pooling, normalize=self.similarity == "cosine",
                                          hidden=encoder.config.hidden_size)
        return pathlib.Path(out_dir)


@register("models.bi_encoder", outputs=BiEncoder.OUTPUTS)
def bi_encoder(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
               pooling: str | None = None, similarity: str | None = None, scale: float = 1.0, shared: bool = True,
               dtype: str = "float32", remat: bool = False, include: Sequence[str] | None = None,
               exclude: Sequence[str] | None = None, seed: int = 0, **config_overrides) -> BiEncoder:
    """BERT_DOT; ``shared=False`` gives the document tower its own copy of the initial weights.

    ``pooling``/``similarity`` default to the pretrained directory's sentence-transformers modules (its Pooling
    mode; cosine when it has a Normalize module), as the model was trained; without ``pretrained``, [CLS] and dot.
    """
    path = resolve_pretrained(pretrained)
    if path is not None:
        settings = hf.sentence_settings(path)
        pooling = pooling or settings.pooling
        similarity = similarity or ("cosine" if settings.normalize else "dot")
    pooling, similarity = pooling or "cls", similarity or "dot"
    with nnx.use_eager_sharding(False):
        q = make_encoder(pretrained=path, config=config, dtype=dtype, remat=remat, include=include,
                         exclude=exclude, rngs=nnx.Rngs(seed), **config_overrides)
        d = None if shared else nnx.clone(q)
    return BiEncoder(q, d, pooling=pooling, similarity=similarity, scale=scale)
