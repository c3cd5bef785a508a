"""BERT_CAT cross-encoder (Nogueira & Cho 2019; the Margin-MSE teacher): ``s = w^T h_[CLS]([CLS] q [SEP] d [SEP]) + b``."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from ranking_jax.models import pretrained as hf
from ranking_jax.models._common import Dense, Scorer, build_encoder, resolve_pretrained
from ranking_jax.models.encoder import BertConfig, Encoder, dropout
from ranking_jax.registry import register

__all__ = ["CrossEncoder", "cross_encoder"]


class CrossEncoder(Scorer, nnx.Module):
    """Scores ``batch["pair_ids"|"pair_mask"|"pair_type_ids"]`` ``[B, L, T]`` -> ``[B, L]``.

    The head reads the last layer's [CLS] vector (no pooler, as BERT_CAT in matchmaker), after dropout
    with the encoder's hidden dropout rate; the last layer computes only that position.
    """

    def __init__(self, encoder: Encoder, *, rngs: nnx.Rngs):
        self.encoder = encoder
        self.head = Dense(encoder.config.hidden_size, 1, rngs=rngs)

    def __call__(self, batch: dict[str, Any], *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        h = self.encoder(batch["pair_ids"], batch["pair_mask"], batch.get("pair_type_ids"),
                         deterministic=deterministic, rngs=rngs, first_tokens=1)
        cls = dropout(h[..., 0, :], self.encoder.config.hidden_dropout_prob, rngs, deterministic)
        return self.head(cls)[..., 0]  # f32: a [*, 1] bf16 dot has no XLA:CPU kernel

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path, **kw) -> "CrossEncoder":
        return cross_encoder(pretrained=path, **kw)

    def save_pretrained(self, out_dir: str | pathlib.Path, *, source: str | pathlib.Path | None = None):
        """The encoder in ``BertModel`` layout plus ``classifier.weight [1, D]``/``classifier.bias [1]``."""
        head = {"classifier.weight": np.asarray(jax.device_get(self.head.kernel[...])).T.copy(),
                "classifier.bias": np.asarray(jax.device_get(self.head.bias[...])).copy()}
        return hf.save_pretrained(self.encoder, out_dir, source=resolve_pretrained(source), extra_tensors=head,
                                  config_updates={"ranking_jax_family": "cross_encoder"})


@register("models.cross_encoder", outputs=CrossEncoder.OUTPUTS)
def cross_encoder(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
                  dtype: str = "float32", remat: bool = False, include: Sequence[str] | None = None,
                  exclude: Sequence[str] | None = None, seed: int = 0, **config_overrides) -> CrossEncoder:
    """BERT_CAT from a pretrained dir (``"minilm"`` or a path; a ``classifier.*`` head there is loaded too)
    or from a random-init ``config``. Other keywords override :class:`BertConfig` fields."""
    rngs = nnx.Rngs(seed)
    with nnx.use_eager_sharding(False):
        encoder, tensors = build_encoder(pretrained=pretrained, config=config, dtype=dtype, remat=remat,
                                         include=include, exclude=exclude, rngs=rngs, **config_overrides)
        model = CrossEncoder(encoder, rngs=rngs)
    if tensors is not None:
        if "classifier.weight" in tensors and hf._selected("classifier.weight", include, exclude):
            model.head.kernel.set_value(np.asarray(tensors["classifier.weight"], np.float32).T)
            model.head.bias.set_value(np.asarray(tensors["classifier.bias"], np.float32))
    return model
