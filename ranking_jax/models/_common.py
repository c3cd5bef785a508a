"""Pieces the model families share: the output protocol, building an encoder from a config or a pretrained dir,
dense heads."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ranking_jax.models import pretrained as hf
from ranking_jax.models.encoder import BertConfig, Encoder, _param, mixed_einsum


def resolve_pretrained(pretrained: str | pathlib.Path | None) -> pathlib.Path | None:
    """``"minilm"`` / ``"mpnet"`` -> the installed all-MiniLM-L6-v2 / all-mpnet-base-v2 directory; a path stays a
    path."""
    if pretrained is None:
        return None
    from ranking_jax import assets
    named = {"minilm": assets.minilm_path, "all-minilm-l6-v2": assets.minilm_path, "mpnet": assets.mpnet_path,
             "all-mpnet-base-v2": assets.mpnet_path}
    if str(pretrained).lower() in named:
        return named[str(pretrained).lower()]()
    return pathlib.Path(pretrained)


def make_encoder(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
                 dtype: str = "float32", remat: bool = False, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, rngs: nnx.Rngs, **config_overrides: Any) -> Encoder:
    """An encoder from ``pretrained`` (dir or "minilm"; weights loaded) or from ``config`` (random init)."""
    return build_encoder(pretrained=pretrained, config=config, dtype=dtype, remat=remat, include=include,
                         exclude=exclude, rngs=rngs, **config_overrides)[0]


def build_encoder(*, pretrained: str | pathlib.Path | None = None, config: BertConfig | dict | None = None,
                  dtype: str = "float32", remat: bool = False, include: Sequence[str] | None = None,
                  exclude: Sequence[str] | None = None, rngs: nnx.Rngs, **config_overrides: Any
                  ) -> tuple[Encoder, dict[str, Any] | None]:
    """:func:`make_encoder` and the checkpoint's tensors (None without ``pretrained``), read once, for heads."""
    path = resolve_pretrained(pretrained)
    if path is not None:
        if config is not None:
            raise ValueError("give either pretrained= or config=, not both (override fields with keywords)")
        base, tensors = hf.load_checkpoint(path)
    else:
        base, tensors = (config if isinstance(config, BertConfig) else BertConfig(**(config or {}))), None
    if config_overrides:
        unknown = set(config_overrides) - {f.name for f in dataclasses.fields(BertConfig)}
        if unknown:
            raise TypeError(f"unknown encoder option(s) {sorted(unknown)}; BertConfig fields are "
                            f"{[f.name for f in dataclasses.fields(BertConfig)]}")
        base = dataclasses.replace(base, **config_overrides)
    if tensors is None or include is not None or exclude is not None:
        encoder = Encoder(base, dtype=dtype, remat=remat, rngs=rngs)
        if tensors is not None:
            hf.load_encoder_weights(encoder, tensors, include=include, exclude=exclude)
        return encoder, tensors
    # Every parameter comes from the checkpoint: build the module abstractly (random initializers cost
    # ~5 s of compilation for MiniLM) and advance the params stream as they would have, so a head built
    # from ``rngs`` next gets the same values either way.
    encoder = nnx.eval_shape(lambda r: Encoder(base, dtype=dtype, remat=remat, rngs=r), rngs)
    n_params = len(jax.tree.leaves(nnx.state(encoder, nnx.Param)))
    rngs.params.count[...] = rngs.params.count[...] + n_params
    hf.load_encoder_weights(encoder, tensors)
    unset = [name for name, v in nnx.to_flat_state(nnx.state(encoder))
             if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if unset:
        raise ValueError(f"{path}: the checkpoint left encoder parameter(s) {unset} unset")
    return encoder, tensors


class Scorer:
    """The output protocol every model family follows (:mod:`ranking_jax.views` names the outputs).

    ``represent(batch)`` runs the parameters: per-row arrays (leading batch axis) from which ``outputs(reps,
    batch, kinds)`` computes the requested outputs without parameters (e.g. a bi-encoder's query and document
    vectors, from which it forms list scores and the in-batch score matrix). GradCache relies on that split.
    The default (families that score (query, document) jointly) represents a batch by its scores.
    """
    OUTPUTS: tuple[str, ...] = ("scores",)

    def represent(self, batch: dict[str, Any], *, deterministic: bool = True,
                  rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        return {"scores": self(batch, deterministic=deterministic, rngs=rngs)}

    def outputs(self, reps: dict[str, jax.Array], batch: dict[str, Any],
                kinds: Sequence[str] = ("scores",)) -> dict[str, jax.Array]:
        return {k: reps[k] for k in kinds}


class FirstStagePrior(Scorer, nnx.Module):
    """Score interpolation with the first stage: ``s(q, d) = s_model(q, d) + weight * s_first(q, d)``, with
    ``s_first`` the batch's ``first_stage_scores``, in training and evaluation alike, so the model learns what the
    first stage misses (the first stage's own ranking at step 0 when the head starts near 0). Only list scores
    carry the prior; the wrapped model's other outputs pass through, and it is what a run exports."""

    def __init__(self, inner: nnx.Module, weight: float):
        self.inner, self.weight = inner, float(weight)
        self.OUTPUTS = inner.OUTPUTS

    def represent(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        return self.inner.represent(batch, deterministic=deterministic, rngs=rngs)

    def outputs(self, reps, batch, kinds: Sequence[str] = ("scores",)):
        out = self.inner.outputs(reps, batch, kinds)
        if "scores" in out:
            out["scores"] = out["scores"] + self.weight * batch["first_stage_scores"]
        return out

    def __call__(self, batch, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        return self.outputs(self.represent(batch, deterministic=deterministic, rngs=rngs), batch)["scores"]


class Dense(nnx.Module):
    """``y = x W + b`` with ``W`` named ``(in_name, out_name)``; float32 or bf16-input matmul."""

    def __init__(self, n_in: int, n_out: int, *, use_bias: bool = True, names=("embed", None),
                 init_std: float = 0.02, rngs: nnx.Rngs):
        init = nnx.initializers.truncated_normal(stddev=init_std)
        self.kernel = _param(rngs, init, (n_in, n_out), names)
        self.bias = _param(rngs, nnx.initializers.zeros_init(), (n_out,), (names[1],)) if use_bias else None

    def __call__(self, x: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
        y = mixed_einsum("...i,io->...o", x, self.kernel[...], dtype)
        return y if self.bias is None else y + self.bias[...]
