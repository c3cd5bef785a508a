"""Model families; each is an nnx.Module ``model(batch, *, deterministic=True, rngs=None) -> scores [B, L]``.

The family contract: dropout is applied only when ``deterministic=False`` and ``rngs`` are given; the outputs a
family gives (``OUTPUTS``: list scores, the in-batch score matrix, embeddings) come from ``represent`` and
``outputs`` (:class:`ranking_jax.models._common.Scorer`). The builders register themselves
(``registry.lookup("models.cross_encoder(pretrained='minilm')")``) with the outputs they give. The
metric-learning ``mlp_embedder`` returns embeddings ``[B, D]`` instead of scores.
"""

from typing import Any, Mapping

from ranking_jax.models.bi_encoder import BiEncoder, bi_encoder
from ranking_jax.models.colbert import ColBERT, colbert, punctuation_ids
from ranking_jax.models.cross_encoder import CrossEncoder, cross_encoder
from ranking_jax.models.encoder import BertConfig, Encoder
from ranking_jax.models.mlp import MlpEmbedder, MlpRanker, mlp_embedder, mlp_ranker
from ranking_jax.models.pretrained import from_pretrained, load_tokenizer, save_pretrained
from ranking_jax.models.prett import PreTT, prett
from ranking_jax.models.tk import TK, tk

__all__ = ["cross_encoder", "bi_encoder", "colbert", "tk", "prett", "mlp_ranker", "MlpRanker", "mlp_embedder",
           "MlpEmbedder", "CrossEncoder", "BiEncoder", "ColBERT", "TK", "PreTT", "Encoder", "BertConfig",
           "from_pretrained", "load_tokenizer", "save_pretrained", "punctuation_ids", "from_config"]


def from_config(model_config: Mapping[str, Any], *, seed: int, pretrained: bool = True):
    """``models.<name>(**keywords, seed=seed)`` of a ``config.model`` mapping (``name`` plus the builder's
    keywords); ``pretrained=False`` skips loading weights (a checkpoint will overwrite them)."""
    from ranking_jax import registry
    fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
    name = fields.pop("name")
    if not pretrained:
        fields.pop("pretrained", None)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return registry.lookup(f"models.{name}")(**kwargs, seed=seed)
