"""Optimizers: ``make(config)`` builds the optax chain from ``config.optimizer``; SAM, ASAM and TRAM.

The chain, for every name::

    zero frozen grads -> [sam | asam | tram](                    # only for those names
        zero frozen grads -> clip by global norm -> partition(
            frozen: set_to_zero, lr group i: base(lr_i · s(t)), rest: base(lr · s(t))))

``base`` is adam / adamw / sgd / lamb / adafactor with weight decay on every parameter whose
'/'-joined path (``"layers/0/attention/query/kernel"``) matches no ``no_decay`` regex (adam and sgd
add it to the gradient, L2-style; adamw, lamb and adafactor decouple it). Regexes use ``re.search``.
Swapping the optimizer is one line: ``--config.optimizer.name=sam`` (the base stays ``optimizer.base``).

A train step calls ``tx.update(grads, opt_state, params, grad_fn=..., outputs=..., outputs_fn=..., outputs_mask=...,
key=...)``: extra arguments an optimizer does not use are ignored, so one train step serves every name, and
:func:`diagnostics` collects what an optimizer's state reports (e.g. TRAM's trust-region distance). Each name is
a registered builder (``optimizers.<name>``): bases ``(c, schedule) -> tx``, wrappers ``(c, base, schedule) -> tx``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ranking_jax import registry
from ranking_jax.optim.paths import path_map
from ranking_jax.optim.sam import SAMState, sam, split_groups
from ranking_jax.optim.schedules import SCHEDULES, make_schedule
from ranking_jax.optim.tram import TRAMState, kl_divergence, perturb_inputs, tram

BASES = ("adam", "adamw", "sgd", "lamb", "adafactor")
WRAPPERS = ("sam", "asam", "tram")
NAMES = BASES + WRAPPERS


def default_config() -> ml_collections.ConfigDict:
    """Every ``config.optimizer`` field with its default; configs start from this and override."""
    c = ml_collections.ConfigDict()
    c.name = "adamw"  # one of NAMES; sam/asam/tram wrap `base`
    c.base = "adamw"  # base optimizer under sam/asam/tram
    c.learning_rate = 1e-5  # peak learning rate
    c.schedule = "constant"  # constant | linear | cosine, after `warmup_steps` of linear warm-up from 0
    c.warmup_steps = 0
    c.total_steps = 0  # end of the decay; required by linear / cosine
    c.end_lr_factor = 0.0  # final lr = learning_rate * end_lr_factor
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = 1e-8
    c.momentum = 0.0  # sgd (0 = none)
    c.nesterov = False
    c.weight_decay = 0.0
    c.no_decay = (r"bias$", r"(?i)norm[^/]*/(scale|weight)$")  # biases (qkv_bias, norm/bias) and LayerNorm
    c.grad_clip_norm = 0.0  # clip by global norm (0 = off)
    c.freeze = ()  # path regexes of parameters that are never updated
    c.lr_groups = ()  # ((path regex, peak lr), ...): first match wins, same schedule shape
    c.rho_schedule = "constant"  # sam/asam radius: constant | lr (rho * lr(t) / learning_rate, as GSAM)
    c.sam = ml_collections.ConfigDict({"rho": 0.05})
    c.asam = ml_collections.ConfigDict({"rho": 0.5, "eta": 0.01})
    c.tram = ml_collections.ConfigDict({"target": "prev", "eta": 0.01, "divergence": "forward", "scale": 1.0,
                                        "max_d": 0.0, "sigma": 0.1, "inputs": r"(^|/)embeddings/word$",
                                        "sigma_relative": False, "calibrate": 0, "target_d": 0.0})
    # target: prev | init | noise; max_d 0 = no clip; noise: z ~ N(0, sigma²) on the params matching `inputs`
    # (sigma_relative: sigma times the table's RMS entry);
    # calibrate N > 0: over the first N steps scale = target_d / median raw d, then fixed (one rule for every target)
    return c


def resolve_config(config: Any) -> ml_collections.ConfigDict:
    """``config.optimizer`` (or an optimizer ConfigDict / dict itself) over :func:`default_config`."""
    cfg = config["optimizer"] if "optimizer" in config else config
    out = default_config()

    def merge(dst, src, prefix):
        for key, value in src.items():
            if key not in dst:
                raise ValueError(f"config.optimizer{prefix}.{key} is not an optimizer option; valid: "
                                 + ", ".join(sorted(dst.keys())))
            if isinstance(dst[key], ml_collections.ConfigDict):
                merge(dst[key], value, f"{prefix}.{key}")
            else:
                try:
                    dst[key] = value
                except TypeError as e:
                    raise ValueError(f"config.optimizer{prefix}.{key}: {e}") from None

    merge(out, cfg, "")
    out.lock()
    return out


def learning_rate_fn(config: Any) -> optax.Schedule:
    """The schedule of the default parameter group (log it as ``lr`` with the step)."""
    c = resolve_config(config)
    return make_schedule(kind=c.schedule, peak=c.learning_rate, warmup_steps=c.warmup_steps,
                         total_steps=c.total_steps, end_factor=c.end_lr_factor)


def _compile(patterns, key: str) -> list[re.Pattern]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"config.optimizer.{key}: invalid regex {p!r}: {e}") from None
    return out


def _labeler(freeze: list[re.Pattern], groups: list[tuple[re.Pattern, str]]) -> Callable[[Any], Any]:
    """Params -> label tree ('frozen', 'group_i' or 'default'); a regex matching no parameter is an error."""
    def labels(params):
        used = set()

        def label(path):
            for rx in freeze:
                if rx.search(path):
                    used.add(rx.pattern)
                    return "frozen"
            for rx, name in groups:
                if rx.search(path):
                    used.add(rx.pattern)
                    return name
            return "default"

        tree = path_map(label, params)
        paths = jax.tree.leaves(path_map(lambda p: p, params))
        unused = [rx.pattern for rx in freeze + [g for g, _ in groups] if rx.pattern not in used]
        if unused and paths:
            raise ValueError(f"config.optimizer freeze/lr_groups regex(es) {unused} match no parameter; "
                             f"parameter paths look like {paths[:5]}")
        return tree
    return labels


def _zero_matching(patterns: list[re.Pattern]) -> optax.GradientTransformation:
    """Zeros the updates of every parameter whose path matches one of ``patterns`` (stateless)."""
    def update(updates, state, params=None):
        del params
        zero = path_map(lambda p: any(rx.search(p) for rx in patterns), updates)
        return jax.tree.map(lambda z, u: jax.tree.map(jnp.zeros_like, u) if z else u, zero, updates), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _decay_mask(c: ml_collections.ConfigDict) -> Callable[[Any], Any]:
    no_decay = _compile(c.no_decay, "no_decay")
    return lambda params: path_map(lambda p: not any(rx.search(p) for rx in no_decay), params)


@registry.register("optimizers.adamw")
def _adamw(c, lr):
    return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=_decay_mask(c))


@registry.register("optimizers.lamb")
def _lamb(c, lr):
    return optax.lamb(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=_decay_mask(c))


@registry.register("optimizers.adafactor")
def _adafactor(c, lr):
    return optax.adafactor(lr, weight_decay_rate=c.weight_decay or None, weight_decay_mask=_decay_mask(c))


def _l2(c, tx):
    """Weight decay added to the gradient (L2 style), as adam and sgd take it."""
    return optax.chain(optax.add_decayed_weights(c.weight_decay, _decay_mask(c)), tx) if c.weight_decay else tx


@registry.register("optimizers.adam")
def _adam(c, lr):
    return _l2(c, optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps))


@registry.register("optimizers.sgd")
def _sgd(c, lr):
    return _l2(c, optax.sgd(lr, momentum=c.momentum or None, nesterov=c.nesterov))


def _rho(c, schedule, rho):
    if c.rho_schedule not in ("constant", "lr"):
        raise ValueError(f"config.optimizer.rho_schedule={c.rho_schedule!r} is unknown; valid: constant, lr")
    return rho if c.rho_schedule == "constant" else (lambda step: rho * schedule(step) / c.learning_rate)


@registry.register("optimizers.sam", wrapper=True)
def _sam(c, base, schedule):
    return sam(base, _rho(c, schedule, c.sam.rho))


@registry.register("optimizers.asam", wrapper=True)
def _asam(c, base, schedule):
    return sam(base, _rho(c, schedule, c.asam.rho), adaptive=True, eta=c.asam.eta)


@registry.register("optimizers.tram", wrapper=True, needs_outputs=True)
def _tram(c, base, schedule):
    t = c.tram
    try:
        return tram(base, target=t.target, eta=t.eta, divergence=t.divergence, scale=t.scale, max_d=t.max_d or None,
                    noise_sigma=t.sigma, noise_inputs=t.inputs, noise_relative=t.sigma_relative, calibrate=t.calibrate,
                    target_d=t.target_d or None)
    except ValueError as e:
        raise ValueError(f"config.optimizer.tram: {e}") from None


def needs_outputs(config: Any) -> bool:
    """Whether ``config.optimizer.name`` reads the model's list scores (TRAM's trust region)."""
    name = resolve_config(config).name
    return name in NAMES and bool(registry.entry(f"optimizers.{name}").meta.get("needs_outputs"))


def diagnostics(opt_state: Any) -> dict[str, jax.Array]:
    """What the optimizer's state reports for logging (every sub-state with a ``diagnostics()`` method)."""
    out = {}
    for s in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "diagnostics")):
        if hasattr(s, "diagnostics"):
            out.update(s.diagnostics())
    return out


def make(config: Any) -> optax.GradientTransformationExtraArgs:
    """Builds the optimizer of ``config.optimizer`` (see :func:`default_config` for the fields)."""
    c = resolve_config(config)
    if c.name not in NAMES:
        raise ValueError(f"config.optimizer.name={c.name!r} is unknown; valid: {', '.join(NAMES)}")
    base_name = c.base if c.name in WRAPPERS else c.name
    if base_name not in BASES:
        raise ValueError(f"config.optimizer.base={base_name!r} is unknown; valid: {', '.join(BASES)}")
    if c.learning_rate <= 0:
        raise ValueError(f"config.optimizer.learning_rate must be > 0, got {c.learning_rate}")
    if c.grad_clip_norm < 0:
        raise ValueError(f"config.optimizer.grad_clip_norm must be >= 0 (0 = off), got {c.grad_clip_norm}: a "
                         "negative norm would flip the gradient's sign")
    schedule = learning_rate_fn(c)
    build = registry.lookup(f"optimizers.{base_name}")
    freeze = _compile(c.freeze, "freeze")
    try:
        groups = [(rx, float(lr)) for rx, lr in zip(_compile([g[0] for g in c.lr_groups], "lr_groups"),
                                                    [g[1] for g in c.lr_groups])]
    except (TypeError, IndexError, ValueError):
        raise ValueError("config.optimizer.lr_groups must be ((regex, peak_lr), ...), got "
                         f"{c.lr_groups!r}") from None

    def scaled(factor):
        return schedule if factor == 1.0 else (lambda step: schedule(step) * factor)

    if freeze or groups:
        transforms = {"default": build(c, schedule), "frozen": optax.set_to_zero()}
        names = []
        for i, (rx, lr) in enumerate(groups):
            names.append((rx, f"group_{i}"))
            transforms[f"group_{i}"] = build(c, scaled(lr / c.learning_rate))
        base = optax.partition(transforms, _labeler(freeze, names))
    else:
        base = build(c, schedule)
    stages = [_zero_matching(freeze)] if freeze else []
    if c.grad_clip_norm:
        stages.append(optax.clip_by_global_norm(c.grad_clip_norm))
    base = optax.chain(*stages, base) if stages else base
    if c.name in BASES:
        return optax.with_extra_args_support(base)
    wrapped = registry.lookup(f"optimizers.{c.name}")(c, base, schedule)
    return optax.chain(_zero_matching(freeze), wrapped) if freeze else wrapped


__all__ = ["make", "default_config", "resolve_config", "learning_rate_fn", "make_schedule", "path_map",
           "perturb_inputs", "sam", "tram", "split_groups", "kl_divergence", "diagnostics", "needs_outputs",
           "SAMState", "TRAMState", "NAMES", "SCHEDULES"]
