"""Debiasing for learning from biased feedback: Rel-MF's propensity-weighted losses for implicit feedback and
curriculum (difficulty) weights for re-ranking training.

``relmf_loss`` is a loss (``[..., list_size]`` scores, clicks and exposure propensities). The curriculum helpers
return weights to pass as ``weights=`` to any loss (or to multiply a per-list loss); they are data-side functions
without gradients, so they take no ``weights``/``reduce_fn``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import apply_weights, as_mask, pair_mask, pairs, ranks, restrict, safe_reduce, sanitize
from ranking_jax.registry import register

Array = jax.Array
ReduceFn = Optional[Callable[..., Array]]

__all__ = ["relmf_loss", "curriculum_loss", "popularity_propensity", "curriculum_difficulty", "curriculum_weights"]


@register("losses.relmf_loss", view="propensity_list")
def relmf_loss(scores: Array, labels: Array, *, propensities: Array, clip: float = 0.0, delta: str = "log",
               where: Optional[Array] = None, weights: Optional[Array] = None,
               reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Rel-MF unbiased (IPS) and clipped estimators for implicit feedback (Saito et al., WSDM 2020,
    arXiv 1909.03601; official ``usaito/unbiased-implicit-rec-real``).

    Clicks ``Y = O·R`` are exposure times relevance; with exposure propensity ``θ`` and ``ŷ = σ(score)``:

    .. math::
        \ell = \frac{Y}{\theta'}\,\delta^{(1)}(\hat y) + \Big(1 - \frac{Y}{\theta'}\Big)\,\delta^{(0)}(\hat y),
        \qquad \theta' = \max(\theta, M)

    an unbiased estimate of the ideal loss ``γ δ¹ + (1-γ) δ⁰`` for ``M = clip = 0`` (the clipped estimator
    trades bias for variance; Saito et al. tuned ``M = 0.00914`` on Yahoo! R3). ``delta="log"`` is the paper's
    cross-entropy (``δ¹ = -log ŷ``, ``δ⁰ = -log(1-ŷ)``), ``delta="squared"`` the official code's
    (``δ¹ = (1-ŷ)²``, ``δ⁰ = ŷ²``). A propensity of 0 is floored at the smallest normal float.

    Args:
      scores: ``[..., list_size]`` logits. labels: clicks in {0, 1}. propensities: ``θ`` in (0, 1], same shape.
      where: optional valid mask. weights: optional per-item weights (the code's ``weight`` on unlabeled pairs).
      reduce_fn: ``jnp.mean`` over valid items, ``jnp.sum`` or None (``[..., list_size]``).
    """
    if delta not in ("log", "squared"):
        raise ValueError(f"relmf_loss: delta must be 'log' or 'squared', got {delta!r}")
    where = as_mask(where)
    s = sanitize(scores, where)
    y = sanitize(labels, where).astype(s.dtype)
    theta = sanitize(jax.lax.stop_gradient(jnp.asarray(propensities, s.dtype)), where, fill=1.0)
    theta = jnp.maximum(theta, jnp.maximum(clip, jnp.finfo(s.dtype).tiny))
    ratio = y / theta
    if delta == "log":
        d1, d0 = jax.nn.softplus(-s), jax.nn.softplus(s)
    else:
        p = jax.nn.sigmoid(s)
        d1, d0 = jnp.square(1.0 - p), jnp.square(p)
    losses = apply_weights(ratio * d1 + (1.0 - ratio) * d0, weights, where)
    return safe_reduce(losses, where=where, reduce_fn=reduce_fn)


def popularity_propensity(item_counts: Array, *, eta: float = 0.5) -> Array:
    r"""Rel-MF's exposure propensity from item popularity: :math:`\theta_i = (n_i / \max_j n_j)^{\eta}`.

    ``item_counts`` ``[num_items]`` are the training clicks per item; ``η = 0.5`` (Saito et al.).
    """
    counts = jnp.asarray(item_counts, jnp.float32)
    top = jnp.max(counts)
    return jnp.power(counts / jnp.where(top > 0, top, 1.0), eta)


_DIFFICULTY = ("reciprank", "normscore", "kde")


def curriculum_difficulty(run_scores: Array, *, method: str = "reciprank", where: Optional[Array] = None) -> Array:
    r"""First-stage "easiness" heuristics ``D ∈ [0, 1]`` of MacAvaney et al. (SIGIR 2020, arXiv 2004.14269;
    OpenNIR ``pointwise_cl``/``pairwise_cl``): how strongly the first-stage ranker (BM25) already believes each
    document is relevant to its query.

    * ``"reciprank"``: ``D = 1 / rank`` (rank by descending run score among the valid items, ties in array order).
    * ``"normscore"``: ``D = (s - min) / (max - min)`` over the list's valid scores (1 if they are all equal).
    * ``"kde"``: ``D = F̂(s)``, the CDF of a Gaussian KDE of the list's valid scores with Scott's bandwidth
      (``scipy.stats.gaussian_kde``: ``h = std_{ddof=1} · n^{-1/5}``); equal scores give the ``h → 0`` limit.

    Returns ``[..., list_size]`` (0 on masked items).
    """
    if method not in _DIFFICULTY:
        raise ValueError(f"curriculum_difficulty: method must be one of {_DIFFICULTY}, got {method!r}")
    where = as_mask(where)
    s = sanitize(jnp.asarray(run_scores, jnp.float32), where)
    valid = jnp.ones(s.shape, dtype=bool) if where is None else where
    if method == "reciprank":
        d = 1.0 / ranks(s, where=where).astype(s.dtype)
    elif method == "normscore":
        hi = jnp.max(s, axis=-1, where=valid, initial=-jnp.inf, keepdims=True)
        lo = jnp.min(s, axis=-1, where=valid, initial=jnp.inf, keepdims=True)
        span = hi - lo
        d = jnp.where(span > 0, (s - lo) / jnp.where(span > 0, span, 1.0), 1.0)
    else:
        n = jnp.sum(valid, axis=-1, keepdims=True).astype(s.dtype)
        mean = jnp.sum(s, axis=-1, keepdims=True) / jnp.maximum(n, 1.0)
        var = jnp.sum(jnp.where(valid, jnp.square(s - mean), 0.0), axis=-1, keepdims=True) / jnp.maximum(n - 1.0, 1.0)
        h = jnp.sqrt(var) * jnp.power(jnp.maximum(n, 1.0), -0.2)
        others = pairs(valid, lambda _, v_j: v_j)
        diff = pairs(s, jnp.subtract)  # s_i - s_j
        safe_h = jnp.where(h > 0, h, 1.0)[..., None]
        kernel_cdf = jnp.where(h[..., None] > 0, jax.scipy.stats.norm.cdf(diff / safe_h),
                               jnp.where(diff > 0, 1.0, jnp.where(diff == 0, 0.5, 0.0)))
        d = jnp.sum(jnp.where(others, kernel_cdf, 0.0), axis=-1) / jnp.maximum(n, 1.0)
    return sanitize(d, where)


def curriculum_weights(difficulty: Array, labels: Array, *, epoch, end_epoch: int = 20, pairwise: bool = False,
                       where: Optional[Array] = None) -> Array:
    r"""Curriculum weights of MacAvaney et al. (SIGIR 2020, arXiv 2004.14269; OpenNIR ``*_cl`` trainers).

    Per-sample weight from the easiness ``D`` of :func:`curriculum_difficulty` (``ε = 10⁻⁸``):

    * pointwise: ``w_i = D_i + ε`` if item ``i`` is relevant (``label > 0``) else ``1 - D_i + ε``
      (``[..., list_size]``, pass as ``weights=`` of a pointwise loss);
    * ``pairwise=True``: ``w = min_{(i, j): y_i > y_j} (D_i - D_j + 1) / 2 + ε`` per list (``[...]``; OpenNIR
      takes the min over a record's negatives); lists without such a pair get 1.

    Annealed to uniform: ``W = w (1 - e/m) + e/m`` for epoch ``e < m = end_epoch`` (OpenNIR ``eoc_epoch = 20``),
    else 1. ``epoch`` may be a traced scalar. OpenNIR multiplies the batch-mean loss by the batch-mean ``W``;
    passing ``W`` as per-sample ``weights`` weights each sample instead (the same for one sample per batch).
    """
    if isinstance(end_epoch, (int, float)) and end_epoch <= 0:
        raise ValueError(f"curriculum_weights: end_epoch must be > 0, got {end_epoch}")
    where = as_mask(where)
    d = sanitize(jnp.asarray(difficulty, jnp.float32), where)
    y = sanitize(labels, where)
    eps = 1e-8
    if pairwise:
        mask = restrict(pairs(y, jnp.greater), pair_mask(where))
        pair_w = (pairs(d, jnp.subtract) + 1.0) / 2.0
        w = jnp.min(jnp.where(mask, pair_w, jnp.inf), axis=(-2, -1))
        w = jnp.where(jnp.any(mask, axis=(-2, -1)), w + eps, 1.0)
    else:
        w = jnp.where(y > 0, d, 1.0 - d) + eps
    progress = jnp.asarray(epoch, jnp.float32) / end_epoch
    w = jnp.where(progress < 1.0, w * (1.0 - progress) + progress, 1.0)
    return w if pairwise else sanitize(w, where)


@register("losses.curriculum_loss", factory=True, view="curriculum",
          example="losses.curriculum_loss(losses.pointwise_sigmoid_loss)")
def curriculum_loss(loss_fn: Callable[..., Array], *, method: str = "reciprank", end_epoch: int = 20,
                    pairwise: bool = False) -> Callable[..., Array]:
    r"""``loss_fn`` with MacAvaney et al.'s curriculum weights (SIGIR 2020, arXiv 2004.14269) as ``weights=``:
    ``W = curriculum_weights(curriculum_difficulty(first_stage_scores, method), labels, epoch, end_epoch,
    pairwise)``, one epoch per list (``epoch [...]``), per item (``[..., list_size]``) or, with ``pairwise``,
    per list broadcast over its items (Rax's pairwise losses weight pair ``(i, j)`` by ``w_i``).

    Returns ``curriculum_<fn>(scores, labels, *, first_stage_scores, epoch, where=None, **kwargs)``.
    """
    if "weights" not in inspect.signature(loss_fn).parameters:
        raise ValueError(f"curriculum_loss: {getattr(loss_fn, '__name__', loss_fn)} takes no weights=; use a loss "
                         "that does (pointwise, pairwise, softmax, ...)")
    curriculum_difficulty(jnp.zeros((1, 2)), method=method)  # validates method early
    if isinstance(end_epoch, (int, float)) and end_epoch <= 0:
        raise ValueError(f"curriculum_loss: end_epoch must be > 0, got {end_epoch}")

    def loss(scores: Array, labels: Array, *, first_stage_scores: Array, epoch: Array,
             where: Optional[Array] = None, **kwargs) -> Array:
        where = as_mask(where)
        d = curriculum_difficulty(first_stage_scores, method=method, where=where)
        e = jnp.asarray(epoch, jnp.float32)
        w = curriculum_weights(d, labels, epoch=e if pairwise else e[..., None], end_epoch=end_epoch,
                               pairwise=pairwise, where=where)
        if pairwise:
            w = jnp.broadcast_to(w[..., None], jnp.shape(scores))
        return loss_fn(scores, labels, where=where, weights=w, **kwargs)

    loss.__name__ = f"curriculum_{getattr(loss_fn, '__name__', 'loss')}"
    return loss
