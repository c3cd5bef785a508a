"""Function transformations (Rax's ``*_t12n``) that turn ranking metrics into differentiable losses.

* :func:`approx_t12n` / :func:`bound_t12n` inject smooth (sigmoid) or hinge-bound ``rank_fn`` / ``cutoff_fn`` into a
  metric that accepts them (every Rax-style metric does) and negate it.
* :func:`gumbel_t12n` evaluates a loss or metric on Gumbel-perturbed scores (adds a required ``key=``).
* :func:`segment_t12n` adds ``segments=`` to a function that lacks it.

Rax 0.4.0's release of these calls ``jax.util.wraps``, removed in JAX 0.7; these work on current JAX.
Example: ``approx_t12n(ndcg_metric)(scores, labels)`` is minus ApproxNDCG.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ranking_jax.ops import (Array, approx_cutoff, approx_ranks, as_mask, restrict, same_segment_mask,
                                       sanitize, softmax)
from ranking_jax.registry import register

__all__ = ["approx_t12n", "bound_t12n", "gumbel_t12n", "segment_t12n"]


def _name(fn: Any) -> str:
    if getattr(fn, "__name__", None):
        return fn.__name__
    if isinstance(fn, functools.partial):
        return _name(fn.func)
    return "<unnamed function>"


def _wraps(wrapped: Callable[..., Any], name_format: str, doc_format: str):
    """Like the removed ``jax.util.wraps``: copies metadata of ``wrapped`` and renames (``approx_{fun}``)."""

    def decorator(fun):
        name = _name(wrapped)
        fun.__dict__.update(getattr(wrapped, "__dict__", {}))
        fun.__name__ = fun.__qualname__ = name_format.format(fun=name)
        fun.__module__ = getattr(wrapped, "__module__", fun.__module__)
        fun.__doc__ = doc_format.format(fun=name, doc=getattr(wrapped, "__doc__", "") or "")
        fun.__wrapped__ = wrapped
        return fun

    return decorator


def _with_kwargs(wrapped: Callable[..., Any], fun: Callable[..., Any], *new_kwargs: str) -> Callable[..., Any]:
    """Sets ``fun.__signature__`` to ``wrapped``'s plus the keyword-only ``new_kwargs`` of ``fun``."""
    wrapped_params = [p for name, p in inspect.signature(wrapped).parameters.items() if name not in new_kwargs]
    fun_params = inspect.signature(fun, follow_wrapped=False).parameters
    params = wrapped_params + [fun_params[name] for name in new_kwargs]
    # Keep a valid ordering: positional, then *args, then keyword-only, then **kwargs.
    params.sort(key=lambda p: p.kind)
    fun.__signature__ = inspect.signature(wrapped).replace(parameters=params)
    return fun


def _accepts(fn: Callable[..., Any], **kwargs) -> bool:
    try:
        inspect.signature(fn).bind_partial(**kwargs)
        return True
    except (TypeError, ValueError):
        return False


def _smooth_metric_loss(metric_fn, rank_step_fn, cutoff_step_fn, name_format, doc_format):
    parameters = inspect.signature(metric_fn).parameters
    injected = {}
    if "rank_fn" in parameters:
        injected["rank_fn"] = functools.partial(approx_ranks, step_fn=rank_step_fn)
    if "cutoff_fn" in parameters:
        injected["cutoff_fn"] = functools.partial(approx_cutoff, step_fn=cutoff_step_fn)

    @_wraps(metric_fn, name_format, doc_format)
    def loss_fn(scores, labels, **kwargs):
        # User kwargs (including an explicit rank_fn / cutoff_fn) override the injected ones.
        return -metric_fn(scores, labels, **{**injected, **kwargs})

    return loss_fn


@register("losses.approx_t12n", factory=True, view="list", example="losses.approx_t12n(metrics.ndcg_metric)")
def approx_t12n(metric_fn: Callable[..., Array], temperature: float = 1.0) -> Callable[..., Array]:
    r"""Turns ``metric_fn`` into the loss ``-metric`` with sigmoid-smoothed ranks and cut-offs (Qin, Liu, Li 2010,
    "A general approximation framework for direct optimization of information retrieval measures"):

    .. math::
        \hat r_i = 1 + \sum_{j \ne i} \sigma\Big(\frac{s_j - s_i}{T}\Big)

    Args:
      metric_fn: a metric accepting ``rank_fn=`` and/or ``cutoff_fn=`` (e.g. ``ndcg_metric``).
      temperature: sigmoid temperature ``T``.

    Returns:
      ``approx_<metric>(scores, labels, **kwargs)``, minus the approximate metric.
    """

    def step_fn(x):
        return jax.nn.sigmoid(x / temperature)

    return _smooth_metric_loss(metric_fn, step_fn, step_fn, "approx_{fun}", "Approx {doc}")


@register("losses.bound_t12n", factory=True, view="list", example="losses.bound_t12n(metrics.ndcg_metric)")
def bound_t12n(metric_fn: Callable[..., Array]) -> Callable[..., Array]:
    r"""Turns ``metric_fn`` into the loss ``-metric`` with hinge bounds: ranks use the upper bound
    :math:`\max(0, 1 + s_j - s_i)` of the step function and cut-offs the lower bound :math:`1 - \max(0, 1 - x)`, so
    the loss upper-bounds ``-metric`` for metrics decreasing in rank.

    Args:
      metric_fn: a metric accepting ``rank_fn=`` and/or ``cutoff_fn=``.

    Returns:
      ``bounded_<metric>(scores, labels, **kwargs)``.
    """

    def upper_bound_step_fn(x):
        return jax.nn.relu(x + 1.0)

    def lower_bound_step_fn(x):
        return 1.0 - jax.nn.relu(1.0 - x)

    return _smooth_metric_loss(metric_fn, upper_bound_step_fn, lower_bound_step_fn, "bounded_{fun}", "Bounded {doc}")


def _is_array(a: Any) -> bool:
    return isinstance(a, (jax.Array, np.ndarray))


def gumbel_t12n(loss_or_metric_fn: Callable[..., Array], *, samples: int = 8, beta: float = 1.0,
                smoothing_factor: Optional[float] = None) -> Callable[..., Array]:
    r"""Evaluates ``loss_or_metric_fn`` on ``samples`` Gumbel-perturbed copies of the scores (Bruch et al. 2020,
    "A stochastic treatment of learning to rank scoring functions"):

    .. math::
        \tilde s = s + \beta g,\quad g \sim \mathrm{Gumbel}(0, 1)

    stacked on a new leading axis of size ``samples`` (labels and array kwargs are repeated). With
    ``smoothing_factor``, scores become :math:`\log(\mathrm{softmax}(\tilde s) + \text{smoothing\_factor})`
    (``1e-20`` matches TF-Ranking's Gumbel losses). The returned function requires ``key=``; if
    ``loss_or_metric_fn`` takes a ``key`` too, it receives a split of it.

    Args:
      loss_or_metric_fn: a loss or metric ``(scores, labels, **kwargs)``.
      samples: number of Gumbel samples.
      beta: Gumbel scale.
      smoothing_factor: optional smoothing (see above).

    Returns:
      ``gumbel_<fn>(scores, labels, *, key, **kwargs)``.
    """

    def repeat(a):
        return jnp.repeat(jnp.expand_dims(a, 0), samples, axis=0)

    @_wraps(loss_or_metric_fn, "gumbel_{fun}", "Gumbel {doc}")
    def gumbel_fn(scores, labels, *, key, **kwargs):
        scores, labels = repeat(scores), repeat(labels)
        kwargs = {name: repeat(arg) if _is_array(arg) else arg for name, arg in kwargs.items()}
        if _accepts(loss_or_metric_fn, key=key):
            key, kwargs["key"] = jax.random.split(key)
        where = as_mask(kwargs.get("where"))
        # Masked scores may be inf/NaN: replace them before adding noise so no NaN reaches any gradient.
        gumbel_scores = sanitize(scores, where) + beta * jax.random.gumbel(key, shape=scores.shape,
                                                                          dtype=jnp.result_type(scores, jnp.float32))
        if smoothing_factor is not None:
            probabilities = softmax(gumbel_scores, where=where)
            gumbel_scores = jnp.log(probabilities + smoothing_factor)
        return loss_or_metric_fn(gumbel_scores, labels, **kwargs)

    return _with_kwargs(loss_or_metric_fn, gumbel_fn, "key")


@register("losses.gumbel_t12n", factory=True, view="list", key=True,
          example="losses.gumbel_t12n(losses.approx_t12n(metrics.ndcg_metric))")
def _gumbel_loss(loss_fn: Callable[..., Array], **kwargs) -> Callable[..., Array]:
    """:func:`gumbel_t12n` of a loss (a metric would be maximized as a loss: wrap ``approx_t12n(metric)``)."""
    from ranking_jax import registry
    if any(registry.entry(n).fn is loss_fn for n in registry.names("metrics")):
        raise ValueError(f"gumbel_t12n of the metric {loss_fn.__name__} is a metric, not a loss; wrap a loss, e.g. "
                         f"losses.gumbel_t12n(losses.approx_t12n(metrics.{loss_fn.__name__}))")
    return gumbel_t12n(loss_fn, **kwargs)


def segment_t12n(loss_or_metric_fn: Callable[..., Array]) -> Callable[..., Array]:
    r"""Adds ``segments=`` to ``loss_or_metric_fn`` (returned unchanged if it already takes ``segments``).

    Each row ``[..., n]`` becomes ``[..., n, n]``: row ``k`` keeps (via ``where``) only the items of the segment whose
    first item is ``k``; rows that start no segment are fully masked. Costs an extra factor ``n`` in memory.

    Args:
      loss_or_metric_fn: a loss or metric ``(scores, labels, *, where=..., **kwargs)``.

    Returns:
      ``segment_<fn>(scores, labels, *, segments=None, **kwargs)``.
    """
    if _accepts(loss_or_metric_fn, segments=None):
        return loss_or_metric_fn

    def expand(a):
        return jnp.repeat(jnp.expand_dims(a, -2), a.shape[-1], axis=-2)

    @_wraps(loss_or_metric_fn, "segment_{fun}", "Segmented {doc}")
    def segmented_fn(scores, labels, *, segments=None, **kwargs):
        if segments is not None:
            scores, labels = expand(scores), expand(labels)
            kwargs = {name: expand(arg) if _is_array(arg) and name != "key" else arg for name, arg in kwargs.items()}
            mask = same_segment_mask(segments)
            mask &= jnp.cumsum(mask, axis=-2) == 1  # keep each segment once (its first row)
            kwargs["where"] = restrict(mask, as_mask(kwargs.get("where")))
        return loss_or_metric_fn(scores, labels, **kwargs)

    return _with_kwargs(loss_or_metric_fn, segmented_fn, "segments")
