"""First stages: the candidate generators whose top ``depth`` a text ranking run re-ranks (``config.data.candidates``,
a spec in namespace ``first_stages``: ``"bm25"``, ``"dense(pretrained='minilm')"``).

Each is ``first_stage(query_texts, corpus_texts, *, depth, mesh, rules) -> (rows [n, depth], scores [n, depth])``
with corpus rows in rank order (-1 / -inf padding).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ranking_jax import registry, scoring
from ranking_jax.data import BM25, TextTokenizer
from ranking_jax.data.encoding import encode_docs, encode_queries, encode_rows


@registry.register("first_stages.bm25")
def bm25(query_texts: Sequence[str], corpus_texts: Sequence[str], *, depth: int, mesh=None, rules=None,
         k1: float = 0.9, b: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """BM25 (Lucene's analyzer and defaults, :class:`ranking_jax.data.BM25`)."""
    return BM25(k1=k1, b=b).index(corpus_texts).search(query_texts, k=depth)


@registry.register("first_stages.dense")
def dense(query_texts: Sequence[str], corpus_texts: Sequence[str], *, depth: int, mesh, rules,
          pretrained: str = "minilm", query_length: int = 64, doc_length: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot dense retrieval: a mean-pooled, cosine bi-encoder (``pretrained``), exact top ``depth``."""
    from ranking_jax.models import bi_encoder
    from ranking_jax.models._common import resolve_pretrained
    model = bi_encoder(pretrained=pretrained, pooling="mean", similarity="cosine")
    tok = TextTokenizer(resolve_pretrained(pretrained), query_length=query_length, doc_length=doc_length)
    q = encode_rows(encode_queries, model, tok.encode_queries(query_texts), mesh=mesh, rules=rules)
    d = encode_rows(encode_docs, model, tok.encode_docs(corpus_texts), mesh=mesh, rules=rules)
    scores, top = scoring.exact_topk(jnp.asarray(q), jnp.asarray(d), depth)
    return top.astype(np.int32), scores.astype(np.float32)


def spec_of(value: str) -> str:
    """``config.data.candidates`` as a registry spec."""
    return value if value.startswith("first_stages.") else f"first_stages.{value}"
