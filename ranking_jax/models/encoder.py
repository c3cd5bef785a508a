"""BERT-family transformer encoder in flax.nnx (Devlin et al. 2019; Hugging Face ``BertModel`` numerics).

Post-LN blocks ``x = LN(x + Attn(x)); x = LN(x + W2 gelu(W1 x))`` with exact-erf GELU, learned token,
position and type embeddings, and a padding mask on the keys. Every parameter carries logical axis names
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
from flax import nnx
from flax.linen import with_logical_constraint as constrain


__all__ = ["BertConfig", "Encoder", "TransformerLayer", "mixed_einsum", "dropout", "mean_pool", "cls_pool",
           "pool", "check_pooling", "POOLINGS"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_ACTIVATIONS = {"gelu": functools.partial(jax.nn.gelu, approximate=False), "relu": jax.nn.relu}
_MASKED = -1e30  # additive logit of a padded key: exp underflows to exactly 0 (an all-padding row stays uniform)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT-family encoder; field names follow Hugging Face ``config.json``."""
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

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> "BertConfig":
        """Reads the BERT fields of a Hugging Face config dict; other keys are ignored."""
        model_type = d.get("model_type", "bert")
        if model_type not in ("bert",):
            raise ValueError(f"{source}: model_type {model_type!r} is not a BERT encoder; only 'bert' "
                             "checkpoints (BertModel key layout) are supported")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: position_embedding_type {d['position_embedding_type']!r} is not "
                             "supported (only 'absolute')")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, path: str | pathlib.Path) -> "BertConfig":
        return cls.from_dict(json.loads(pathlib.Path(path).read_text()), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """A Hugging Face ``BertModel`` config dict (loadable by transformers)."""
        return {"architectures": ["BertModel"], "model_type": "bert", "position_embedding_type": "absolute",
                **dataclasses.asdict(self)}


def _init(std: float):
    return nnx.initializers.truncated_normal(stddev=std)


def _param(rngs: nnx.Rngs, init, shape, names) -> nnx.Param:
    return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape, jnp.float32))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bf16_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _bf16_einsum_fwd(spec, a, b):
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    out = jnp.einsum(spec, a16, b16, preferred_element_type=jnp.float32)
    return out, (a16, b16, jnp.zeros((), a.dtype), jnp.zeros((), b.dtype))


def _bf16_einsum_bwd(spec, res, g):
    a16, b16, a_like, b_like = res
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    g16 = g.astype(jnp.bfloat16)
    # Valid because every index of one operand also appears in the other operand or in the output.
    da = jnp.einsum(f"{out},{sb}->{sa}", g16, b16, preferred_element_type=jnp.float32)
    db = jnp.einsum(f"{sa},{out}->{sb}", a16, g16, preferred_element_type=jnp.float32)
    return da.astype(a_like.dtype), db.astype(b_like.dtype)


_bf16_einsum.defvjp(_bf16_einsum_fwd, _bf16_einsum_bwd)


def mixed_einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``einsum(spec, a, b)`` in float32, or with bfloat16 inputs and float32 accumulation.

    For ``dtype=bfloat16`` the two backward matmuls also take bfloat16 inputs (the cotangent is
    rounded), so the whole train step runs at the CPU's/accelerator's bf16 matmul rate. The result and
    the gradients are float32. ``spec`` is a two-operand einsum without repeated or summed-out-alone
    indices.
    """
    if jnp.dtype(dtype) == jnp.float32:
        return jnp.einsum(spec, a, b)
    if jnp.dtype(dtype) != jnp.bfloat16:
        raise ValueError(f"compute dtype must be float32 or bfloat16, got {dtype}")
    return _bf16_einsum(spec, a, b)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _fast_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint16 bits ``fmix32(fmix32(i * phi ^ s0) ^ s1)`` of the element index ``i`` and the key's words.

    A counter-based hash, elementwise and partitionable: XLA fuses it into the consumer, where threefry
    costs ~30 ns per 32-bit word on CPU (as much as the matmuls of a train step).
    """
    if math.prod(shape) >= 2 ** 32:
        raise ValueError(f"dropout on {math.prod(shape)} elements exceeds the 2^32 counter; split the array")
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    i = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    h = _fmix32((i * jnp.uint32(0x9E3779B1)) ^ words[0])
    h = _fmix32(h ^ words[-1])
    return (h >> 16).astype(jnp.uint16)


def dropout(x: jax.Array, rate: float, rngs: nnx.Rngs | None, deterministic: bool) -> jax.Array:
    """Inverted dropout; a no-op when ``deterministic`` or without ``rngs`` (the model family contract of
    :mod:`ranking_jax.models`).

    Keeps an element when 16 random bits are >= ``round(rate * 2^16)`` and rescales by the exact keep
    probability, so it is unbiased. The bits are a counter-based hash of the element index and the key
    (:func:`_fast_bits`); threefry bits for every attention probability cost as much as the matmuls on CPU.
    """
    if deterministic or rngs is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    threshold = int(round(rate * 65536))
    keep = _fast_bits(rngs.dropout(), x.shape) >= threshold
    return jnp.where(keep, x * (65536.0 / (65536 - threshold)), 0.0).astype(x.dtype)


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
                 rngs: nnx.Rngs | None = None, first_tokens: int | None = None) -> jax.Array:
        """``x``: float32 [N, T, D]; ``key_mask``: bool [N, T] (False = padding, never attended to).

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
    """``LN(word[ids] + position[t] + type[type_ids])``."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        init, c = _init(config.initializer_range), config
        self.word = _param(rngs, init, (c.vocab_size, c.hidden_size), ("vocab", "embed"))
        self.position = _param(rngs, init, (c.max_position_embeddings, c.hidden_size), (None, "embed"))
        self.token_type = _param(rngs, init, (c.type_vocab_size, c.hidden_size), (None, "embed"))
        self.norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, rngs=rngs)

    def __call__(self, ids: jax.Array, type_ids: jax.Array | None, position_offset: int = 0) -> jax.Array:
        n_pos = self.position.shape[0]
        if ids.shape[-1] + position_offset > n_pos:
            raise ValueError(f"sequence length {ids.shape[-1]} exceeds max_position_embeddings {n_pos}; "
                             "truncate the inputs (max_length) to at most that")
        x = jnp.take(self.word[...], ids, axis=0)
        x = x + self.position[...][position_offset:position_offset + ids.shape[-1]]
        types = self.token_type[...]
        x = x + (types[0] if type_ids is None else jnp.take(types, type_ids, axis=0))
        return self.norm(x)


class Encoder(nnx.Module):
    """BERT encoder: ``ids, mask [..., T] -> hidden states float32 [..., T, D]``.

    Options: ``dtype`` ("float32" | "bfloat16" matmul compute), ``remat`` (recompute each layer in the
    backward pass, ``nnx.remat``). Dropout rates come from the config and are active only with
    ``deterministic=False`` and an ``nnx.Rngs`` holding a ``dropout`` stream.
    """

    def __init__(self, config: BertConfig, *, dtype: str = "float32", remat: bool = False, rngs: nnx.Rngs):
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
            def call(layer, x, mask, rngs):
                return layer(x, mask, dtype=dtype, deterministic=deterministic, rngs=rngs, first_tokens=first)
            return nnx.remat(call) if self.remat else call

        for i, layer in enumerate(todo):
            x = caller(first_tokens if i == len(todo) - 1 else None)(layer, x, mask, rngs)
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


POOLINGS = {"mean": mean_pool, "cls": cls_pool}


def check_pooling(pooling: str) -> str:
    """``pooling`` if it names one of :data:`POOLINGS`, else a ValueError listing them."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
    return pooling


def pool(hidden: jax.Array, mask: jax.Array, pooling: str) -> jax.Array:
    """``mean_pool`` or ``cls_pool`` by name."""
    return POOLINGS[check_pooling(pooling)](hidden, mask)
