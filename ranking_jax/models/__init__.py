"""Model families; each is an nnx.Module ``model(batch, *, deterministic=True, rngs=None) -> scores [B, L]``.

Registry names (``registry.lookup("models.cross_encoder(pretrained='minilm')")``) are the lowercase
builders; the classes and the pretrained I/O are exported too. The metric-learning ``mlp_embedder`` returns
embeddings ``[B, D]`` instead of scores.
"""

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
           "from_pretrained", "load_tokenizer", "save_pretrained", "punctuation_ids"]
