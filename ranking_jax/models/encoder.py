"""Transformer encoder in flax.nnx: BERT (Devlin et al. 2019) and MPNet (Song et al. 2020) as configs of one
module, with Hugging Face ``BertModel`` / ``MPNetModel`` numerics.

Post-LN blocks ``x = LN(x + Attn(x)); x = LN(x + W2 gelu(W1 x))`` with exact-erf GELU, learned token,
position (and, for BERT, type) embeddings, and a padding mask on the keys. MPNet adds to every layer's
attention logits one learned bias per head and relative-position bucket (T5-style buckets, shared by all
layers) and numbers positions from ``pad_token_id + 1``. Every parameter carries logical axis names
(``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``) and the main activations are constrained to
``("batch", "length", "embed")`` with flax's ``with_logical_constraint``; the rules in force (flax's
``logical_axis_rules``, set by :func:`ranking_jax.sharding.axis_rules`) map them to the mesh.

Attention runs heads-major and normalizes after the value product, ``softmax(l) v = (e^{l - max l} v) /
sum e^{l - max l}``, one pass less over the [N, H, T, T] scores. Heads that read [CLS] only pass
``first_tokens=1``: the last layer then computes keys and values for every token and the rest for [CLS]
alone (14% of MiniLM's FLOPs at T=256).

Precision: parameters are float32. ``dtype="bfloat16"`` runs every matmul (forward *and* backward) on
bfloat16 inputs with float32 accumulation (:func:`mixed_einsum`); layer norms, softmax, GELU and
residuals stay float32.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen import with_logical_constraint as constrain

from ranking_jax.models.numerics import dropout, mixed_einsum


__all__ = ["EncoderConfig", "BertConfig", "Encoder", "relative_position_buckets", "TransformerLayer", "mixed_einsum",
           "dropout", "mean_pool", "cls_pool", "max_pool", "mean_sqrt_len_pool", "pool", "check_pooling", "POOLINGS"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_ACTIVATIONS = {"gelu": functools.partial(jax.nn.gelu, approximate=False), "relu": jax.nn.relu}
_MASKED = -1e30  # additive logit of a padded key: exp underflows to exactly 0 (an all-padding row stays uniform)


_MODEL_TYPES = {"bert": "BertModel", "mpnet": "MPNetModel"}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a BERT or MPNet encoder; field names follow Hugging Face ``config.json``."""
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    initializer_range: float = 0.02
    model_type: str = "bert"
    relative_attention_num_buckets: int = 0  # MPNet: 32 (HF's max distance is fixed at 128)

    def __post_init__(self):
        if self.model_type not in _MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not supported; use one of {sorted(_MODEL_TYPES)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")

    @property
    def position_start(self) -> int:
        """The position id of the first token: MPNet (like RoBERTa) numbers them from ``pad_token_id + 1``."""
        return self.pad_token_id + 1 if self.model_type == "mpnet" else 0

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> "EncoderConfig":
        """Reads the encoder fields of a Hugging Face config dict; other keys are ignored."""
        model_type = d.get("model_type", "bert")
        if model_type not in _MODEL_TYPES:
            raise ValueError(f"{source}: model_type {model_type!r} is not supported; use a checkpoint of "
                             f"{' or '.join(_MODEL_TYPES.values())}")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: position_embedding_type {d['position_embedding_type']!r} is not "
                             "supported (only 'absolute')")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in known}
        if model_type == "mpnet":  # no token types; HF's MPNetConfig defaults
            fields = {"type_vocab_size": 0, "relative_attention_num_buckets": 32, **fields}
        return cls(**fields)

    @classmethod
    def from_json(cls, path: str | pathlib.Path) -> "EncoderConfig":
        return cls.from_dict(json.loads(pathlib.Path(path).read_text()), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """A Hugging Face ``BertModel`` / ``MPNetModel`` config dict (loadable by transformers)."""
        extra = {"position_embedding_type": "absolute"} if self.model_type == "bert" else {}
        return {"architectures": [_MODEL_TYPES[self.model_type]], **extra, **dataclasses.asdict(self)}


BertConfig = EncoderConfig  # the name before MPNet joined


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """int [length, length] bucket of ``key - query`` (MPNet's ``relative_position_bucket``, T5's scheme): half
    the buckets per direction, exact up to a quarter of them, then logarithmic up to ``max_distance``.
    Computed in float32 as the reference (PyTorch) does, so buckets at the log boundaries agree."""
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]
    n = -rel
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_distance / exact))
                  * np.float32(half - exact))
    large = np.minimum(exact + np.nan_to_num(scaled, neginf=0.0).astype(np.int64), half - 1)
    return ret + np.where(n < exact, n, large)


def _init(std: float):
    return nnx.initializers.truncated_normal(stddev=std)


def _param(rngs: nnx.Rngs, init, shape, names) -> nnx.Param:
    return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape, jnp.float32))


class LayerNorm(nnx.Module):
    """``(x - mean) / sqrt(var + eps) * scale + bias`` in float32 over the last axis."""

    def __init__(self, dim: int, *, eps: float, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = _param(rngs, nnx.initializers.ones_init(), (dim,), ("embed",))
        self.bias = _param(rngs, nnx.initializers.zeros_init(), (dim,), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class TransformerLayer(nnx.Module):
    """One post-LN block: self-attention (fused QKV ``[embed, 3, heads, kv]``) then the MLP."""

    def __init__(self, hidden: int, heads: int, mlp: int, *, eps: float, activation: str = "gelu",
                 hidden_dropout: float = 0.0, attention_dropout: float = 0.0, init_std: float = 0.02,
                 rngs: nnx.Rngs):
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        kv = hidden // heads
        init, zeros = _init(init_std), nnx.initializers.zeros_init()
        self.heads, self.activation = heads, activation
        self.hidden_dropout, self.attention_dropout = hidden_dropout, attention_dropout
        self.qkv_kernel = _param(rngs, init, (hidden, 3, heads, kv), ("embed", None, "heads", "kv"))
        self.qkv_bias = _param(rngs, zeros, (3, heads, kv), (None, "heads", "kv"))
        self.out_kernel = _param(rngs, init, (heads, kv, hidden), ("heads", "kv", "embed"))
        self.out_bias = _param(rngs, zeros, (hidden,), ("embed",))
        self.attention_norm = LayerNorm(hidden, eps=eps, rngs=rngs)
        self.mlp_kernel = _param(rngs, init, (hidden, mlp), ("embed", "mlp"))
        self.mlp_bias = _param(rngs, zeros, (mlp,), ("mlp",))
        self.mlp_out_kernel = _param(rngs, init, (mlp, hidden), ("mlp", "embed"))
        self.mlp_out_bias = _param(rngs, zeros, (hidden,), ("embed",))
        self.mlp_norm = LayerNorm(hidden, eps=eps, rngs=rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array, *, dtype=jnp.float32, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None, first_tokens: int | None = None,
                 bias: jax.Array | None = None) -> jax.Array:
        """``x``: float32 [N, T, D]; ``key_mask``: bool [N, T] (False = padding, never attended to); ``bias``:
        float32 [H, T, T] added to the attention logits (MPNet's relative positions).

        ``first_tokens=n`` returns only the first ``n`` positions' outputs [N, n, D] and computes only
        them: keys and values still come from all T tokens (equal to ``self(x, ...)[:, :n]``).
        """
        w, b = self.qkv_kernel[...], self.qkv_bias[...]
        xq = x if first_tokens is None else x[:, :first_tokens]
        # Heads-major [N, H, T, K]: the batched score and context matmuls then need no transposes.
        q = mixed_einsum("ntd,dhk->nhtk", xq, w[:, 0], dtype) + b[0][:, None]
        k, v = mixed_einsum("ntd,dshk->snhtk", x, w[:, 1:], dtype) + b[1:, None, :, None]
        q = constrain(q, ("batch", "heads", "length", "kv"))
        # Scores and context stay float32: XLA:CPU has no bf16 x bf16 -> f32 kernel for these batched
        # dots' backward (DotThunk), and they are ~10% of the FLOPs at T=256.
        logits = jnp.einsum("nhqk,nhtk->nhqt", q * (1.0 / math.sqrt(q.shape[-1])), k)
        if bias is not None:
            logits = logits + bias[None, :, :logits.shape[2]]
        logits = logits + jnp.where(key_mask, 0.0, _MASKED)[:, None, None, :]
        # Normalized after the value product (module docstring); the shift is a constant for the gradient,
        # and dropout on the unnormalized weights equals dropout on the probabilities.
        e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
        denom = jnp.sum(e, axis=-1, keepdims=True)
        e = dropout(e, self.attention_dropout, rngs, deterministic)
        ctx = jnp.einsum("nhqt,nhtk->nhqk", e, v) / denom
        attn = mixed_einsum("nhqk,hkd->nqd", ctx, self.out_kernel[...], dtype) + self.out_bias[...]
        attn = dropout(attn, self.hidden_dropout, rngs, deterministic)
        x = self.attention_norm(xq + attn)
        x = constrain(x, ("batch", "length", "embed"))
        h = mixed_einsum("ntd,dm->ntm", x, self.mlp_kernel[...], dtype) + self.mlp_bias[...]
        h = constrain(_ACTIVATIONS[self.activation](h), ("batch", "length", "mlp"))
        h = mixed_einsum("ntm,md->ntd", h, self.mlp_out_kernel[...], dtype) + self.mlp_out_bias[...]
        h = dropout(h, self.hidden_dropout, rngs, deterministic)
        return constrain(self.mlp_norm(x + h), ("batch", "length", "embed"))


class Embeddings(nnx.Module):
    """``LN(word[ids] + position[start + t] + type[type_ids])`` (no type term when ``type_vocab_size`` is 0).

    Inputs are right-padded, so real tokens sit at ``t = 0..n-1``: MPNet's position ids (counted over
    non-padding tokens from ``pad_token_id + 1``) are then ``pad_token_id + 1 + t``; padded positions are masked.
    """

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        init, c = _init(config.initializer_range), config
        self.start = c.position_start
        self.word = _param(rngs, init, (c.vocab_size, c.hidden_size), ("vocab", "embed"))
        self.position = _param(rngs, init, (c.max_position_embeddings, c.hidden_size), (None, "embed"))
        self.token_type = (_param(rngs, init, (c.type_vocab_size, c.hidden_size), (None, "embed"))
                           if c.type_vocab_size else None)
        self.norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, rngs=rngs)

    def __call__(self, ids: jax.Array, type_ids: jax.Array | None, position_offset: int = 0) -> jax.Array:
        n_pos, first = self.position.shape[0], self.start + position_offset
        if ids.shape[-1] + first > n_pos:
            less = f" less the {first} position ids before the first token" if first else ""
            raise ValueError(f"sequence length {ids.shape[-1]} exceeds max_position_embeddings {n_pos}{less}; "
                             f"truncate the inputs (max_length) to at most {n_pos - first}")
        x = jnp.take(self.word[...], ids, axis=0)
        x = x + self.position[...][first:first + ids.shape[-1]]
        if self.token_type is not None:
            types = self.token_type[...]
            x = x + (types[0] if type_ids is None else jnp.take(types, type_ids, axis=0))
        return self.norm(x)


class Encoder(nnx.Module):
    """BERT / MPNet encoder: ``ids, mask [..., T] -> hidden states float32 [..., T, D]``.

    Options: ``dtype`` ("float32" | "bfloat16" matmul compute), ``remat`` (recompute each layer in the
    backward pass, ``nnx.remat``). Dropout rates come from the config and are active only with
    ``deterministic=False`` and an ``nnx.Rngs`` holding a ``dropout`` stream.
    """

    def __init__(self, config: EncoderConfig, *, dtype: str = "float32", remat: bool = False, rngs: nnx.Rngs):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.config, self.dtype, self.remat = config, dtype, remat
        self.embeddings = Embeddings(config, rngs=rngs)
        self.layers = nnx.List([
            TransformerLayer(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                             eps=config.layer_norm_eps, activation=config.hidden_act,
                             hidden_dropout=config.hidden_dropout_prob,
                             attention_dropout=config.attention_probs_dropout_prob,
                             init_std=config.initializer_range, rngs=rngs)
            for _ in range(config.num_hidden_layers)])
        self.relative_attention_bias = (
            _param(rngs, _init(config.initializer_range),
                   (config.relative_attention_num_buckets, config.num_attention_heads), (None, "heads"))
            if config.relative_attention_num_buckets else None)

    def position_bias(self, length: int) -> jax.Array | None:
        """float32 [H, T, T]: the relative-position bias every layer adds to its logits (None for BERT)."""
        if self.relative_attention_bias is None:
            return None
        buckets = relative_position_buckets(length, self.config.relative_attention_num_buckets)
        return jnp.transpose(jnp.take(self.relative_attention_bias[...], buckets, axis=0), (2, 0, 1))

    @property
    def compute_dtype(self):
        """The matmul input dtype of ``self.dtype`` (jnp.float32 or jnp.bfloat16)."""
        return _DTYPES[self.dtype]

    def embed(self, ids: jax.Array, type_ids: jax.Array | None = None, *, position_offset: int = 0,
              deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Embeddings [N, T, D] after dropout; positions start at ``position_offset``."""
        x = self.embeddings(ids, type_ids, position_offset)
        x = dropout(x, self.config.hidden_dropout_prob, rngs, deterministic)
        return constrain(x, ("batch", "length", "embed"))

    def run_layers(self, x: jax.Array, mask: jax.Array, layers: slice = slice(None), *, deterministic: bool = True,
                   rngs: nnx.Rngs | None = None, first_tokens: int | None = None) -> jax.Array:
        """Applies ``self.layers[layers]`` to hidden states ``x`` [N, T, D] with key mask [N, T].

        ``first_tokens=n`` returns ``[N, n, D]``: the last of these layers computes only the first ``n``
        positions (a [CLS] head needs ``n=1``; that layer's queries, MLP and norms then cost 1/T).
        """
        dtype = self.compute_dtype
        todo = self.layers[layers]
        if first_tokens is not None and not todo:
            return x[:, :first_tokens]

        def caller(first):
            def call(layer, x, mask, bias, rngs):
                return layer(x, mask, dtype=dtype, deterministic=deterministic, rngs=rngs, first_tokens=first,
                             bias=bias)
            return nnx.remat(call) if self.remat else call

        bias = self.position_bias(x.shape[1])
        for i, layer in enumerate(todo):
            x = caller(first_tokens if i == len(todo) - 1 else None)(layer, x, mask, bias, rngs)
        return x

    def __call__(self, ids: jax.Array, mask: jax.Array, type_ids: jax.Array | None = None, *,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None,
                 first_tokens: int | None = None) -> jax.Array:
        """Hidden states ``[..., T, D]``, or only the first ``first_tokens`` positions' (see :meth:`run_layers`)."""
        lead, t = ids.shape[:-1], ids.shape[-1]
        ids, mask = ids.reshape(-1, t), mask.reshape(-1, t).astype(bool)
        type_ids = None if type_ids is None else type_ids.reshape(-1, t)
        x = self.embed(ids, type_ids, deterministic=deterministic, rngs=rngs)
        x = self.run_layers(x, mask, deterministic=deterministic, rngs=rngs, first_tokens=first_tokens)
        return x.reshape(*lead, x.shape[-2], x.shape[-1])


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean over tokens (sentence-transformers): ``sum_t m_t h_t / max(sum_t m_t, 1e-9)``."""
    m = mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=-2) / jnp.maximum(jnp.sum(m, axis=-2), 1e-9)


def cls_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """The first ([CLS]) token's hidden state."""
    del mask
    return hidden[..., 0, :]


def max_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked max over tokens (sentence-transformers: padded positions count as -1e9)."""
    return jnp.max(jnp.where(mask.astype(bool)[..., None], hidden, -1e9), axis=-2)


def mean_sqrt_len_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """``sum_t m_t h_t / sqrt(max(sum_t m_t, 1e-9))`` (sentence-transformers' ``mean_sqrt_len_tokens``)."""
    m = mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=-2) / jnp.sqrt(jnp.maximum(jnp.sum(m, axis=-2), 1e-9))


POOLINGS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool, "mean_sqrt_len": mean_sqrt_len_pool}


def check_pooling(pooling: str) -> str:
    """``pooling`` if it names one of :data:`POOLINGS`, else a ValueError listing them."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
    return pooling


def pool(hidden: jax.Array, mask: jax.Array, pooling: str) -> jax.Array:
    """One of :data:`POOLINGS` by name."""
    return POOLINGS[check_pooling(pooling)](hidden, mask)
