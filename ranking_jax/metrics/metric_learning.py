r"""Metric-learning evaluation over embeddings: Recall@k and threshold consistency (OPIS, epsilon-OPIS).

OPIS follows Zhang et al. 2024, "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning" (ICLR,
arXiv 2307.04047), as reconstructed in the project's reference notes (the paper's PDF was not available):

* For a distance threshold :math:`d` and a class :math:`i`: :math:`TPR_i(d)` is the share of class-:math:`i`
  positive pairs (both ends in :math:`i`) with distance :math:`\le d`; :math:`TNR_i(d)` the share of class-:math:`i`
  negative pairs (exactly one end in :math:`i`) with distance :math:`> d`.
* Utility :math:`U_i(d) = 2\,TPR_i\,TNR_i / (TPR_i + TNR_i)` (0 when both are 0).
* :math:`\mathrm{OPIS} = \frac{1}{T}\sum_{i=1}^{T} \frac{1}{d_{max}-d_{min}}\int_{d_{min}}^{d_{max}}
  (U_i(d) - \bar U(d))^2\,dd` over the :math:`T` classes that have a positive and a negative pair, with
  :math:`\bar U(d)` the utility of the whole test set (all pairs pooled; ``reference="mean"`` uses the mean of the
  class utilities instead).
* :math:`\epsilon\text{-OPIS} = \frac{1}{d_{max}-d_{min}}\int (\bar U_{best,\epsilon}(d) -
  \bar U_{worst,\epsilon}(d))^2\,dd`, where at each :math:`d` the classes are sorted by utility and
  :math:`\bar U_{best/worst,\epsilon}` average the top/bottom :math:`\lceil \epsilon T \rceil` of them (the exact
  normalisation of the paper is not verified).
* Calibration range: by default :math:`[d_{min}, d_{max}] = [d(10^{-2}), d(10^{-1})]`, the distances at which the
  global false-accept rate (share of all negative pairs with distance :math:`\le d`) reaches 1% and 10%;
  :math:`d(q)` is the :math:`\lceil qM \rceil`-th smallest of the :math:`M` negative-pair distances (numpy's
  ``quantile(method="inverted_cdf")``). Pass ``far_range`` to move it, or ``distance_range=(d_min, d_max)`` to fix
  it. The integral is the trapezoidal rule on ``num_thresholds`` evenly spaced thresholds (a zero-width range
  gives the value at that threshold).

Lower OPIS means a single threshold serves all classes more evenly. Everything is O(N^2) in memory (all pairs).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from ranking_jax.ops import safe_reduce, sanitize

Array = jax.Array

__all__ = ["eps_opis", "opis", "recall_at_k", "threshold_utilities"]

_DISTANCES = ("cosine", "euclidean", "dot")


def _pairwise_distances(embeddings: Array, distance: str) -> Array:
    """``[N, N]`` distances: ``1 - cos``, Euclidean, or ``-<a, b>`` ("dot", a negated similarity)."""
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    x = jnp.asarray(embeddings, jnp.float32)
    if distance == "cosine":
        norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
        x = x / jnp.where(norm > 0, norm, 1.0)
        return 1.0 - x @ x.T
    dots = x @ x.T
    if distance == "dot":
        return -dots
    sq = jnp.sum(x * x, axis=-1)
    return jnp.sqrt(jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * dots, 0.0))


def _inputs(embeddings: Array, labels: Array, where: Optional[Array]) -> tuple[Array, Array, Array]:
    embeddings, labels = jnp.asarray(embeddings), jnp.asarray(labels)
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"expected embeddings [N, D] and labels [N], got {embeddings.shape} and {labels.shape}")
    valid = jnp.ones(labels.shape, bool) if where is None else jnp.asarray(where).astype(bool)
    return sanitize(embeddings, valid[:, None]), labels, valid


def recall_at_k(embeddings: Array, labels: Array, *, k: Union[int, Sequence[int]] = 1,
                where: Optional[Array] = None, distance: str = "cosine",
                reduce_fn: Optional[Callable[..., Array]] = jnp.mean) -> Array:
    r"""Recall@k for retrieval by class (Song et al. 2016): each item queries all *other* valid items
    (leave-one-out); it scores 1 if one of its ``k`` nearest neighbours has its label.

    Neighbours are ordered by distance, ties by index (lower first). Queries whose class has no other valid item
    cannot be answered and, like masked items, are left out of the mean (pytorch-metric-learning also drops such
    "lone" queries).

    Args:
      embeddings: ``[N, D]``.
      labels: ``[N]`` class ids.
      k: an int, or a sequence of them (adds a leading axis, one entry per k).
      where: optional ``[N]`` bool mask of valid items.
      distance: ``"cosine"`` (default), ``"euclidean"`` or ``"dot"`` (largest inner product first).
      reduce_fn: ``jnp.mean`` (over answerable queries), ``jnp.sum`` or ``None`` (per-query 0/1, ``[N]``).
    """
    several = isinstance(k, (tuple, list))
    ks = tuple(k) if several else (k,)
    if not ks or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in ks):
        raise ValueError(f"recall_at_k: k must be an int >= 1 or a non-empty sequence of them, got {k!r}")
    embeddings, labels, valid = _inputs(embeddings, labels, where)
    n = labels.shape[0]
    candidate = valid[None, :] & valid[:, None] & ~jnp.eye(n, dtype=bool)
    same = (labels[:, None] == labels[None, :]) & candidate
    neg_distance = jnp.where(candidate, -_pairwise_distances(embeddings, distance), -jnp.inf)
    _, neighbours = jax.lax.top_k(neg_distance, min(max(ks), n))
    hits = jnp.take_along_axis(same, neighbours, axis=-1)
    answerable = jnp.any(same, axis=-1)
    values = [jnp.any(hits[:, :kk], axis=-1).astype(jnp.float32) for kk in ks]
    out = [safe_reduce(v, where=answerable, reduce_fn=reduce_fn) for v in values]
    return jnp.stack(out) if several else out[0]


class ThresholdUtilities(NamedTuple):
    """Per-class and overall utility curves over the calibration range (see the module docstring).

    ``class_utility[i]`` is the curve of the class of item ``i`` when ``i`` is that class's first valid item
    (``class_valid[i]`` True: the class has a positive and a negative pair); other rows are 0.
    """

    thresholds: Array  # [G]
    class_utility: Array  # [N, G]
    class_valid: Array  # [N] bool
    overall_utility: Array  # [G]


def _utility(tp: Array, positives: Array, fp: Array, negatives: Array) -> Array:
    tpr = tp / jnp.maximum(positives, 1)
    tnr = (negatives - fp) / jnp.maximum(negatives, 1)
    total = tpr + tnr
    return jnp.where(total > 0, 2.0 * tpr * tnr / jnp.where(total > 0, total, 1.0), 0.0)


def _far_distance(sorted_negatives: Array, count: Array, q: float) -> Array:
    """The ``ceil(q * count)``-th smallest negative distance (the distance at which the FAR reaches ``q``)."""
    index = jnp.clip(jnp.ceil(q * count).astype(jnp.int32) - 1, 0, sorted_negatives.shape[0] - 1)
    return jnp.where(count > 0, sorted_negatives[index], 0.0)


def threshold_utilities(embeddings: Array, labels: Array, *, where: Optional[Array] = None,
                        distance: str = "cosine", far_range: tuple[float, float] = (1e-2, 1e-1),
                        distance_range: Optional[tuple[float, float]] = None,
                        num_thresholds: int = 101) -> ThresholdUtilities:
    """Utility :math:`U_i(d)` of every class and of the whole set on the calibration grid (module docstring).

    Args:
      embeddings: ``[N, D]``; labels: ``[N]`` class ids; where: optional ``[N]`` bool mask of valid items.
      distance: ``"cosine"`` (``1 - cos``, default), ``"euclidean"`` or ``"dot"`` (``-<a, b>``).
      far_range: global false-accept rates that fix ``(d_min, d_max)``.
      distance_range: explicit ``(d_min, d_max)``; overrides ``far_range``.
      num_thresholds: grid size ``G >= 2``.
    """
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be >= 2, got {num_thresholds}")
    if distance_range is None and not 0.0 < far_range[0] <= far_range[1] <= 1.0:
        raise ValueError(f"far_range must satisfy 0 < low <= high <= 1, got {far_range}")
    if distance_range is not None and not distance_range[0] <= distance_range[1]:
        raise ValueError(f"distance_range must be (d_min, d_max) with d_min <= d_max, got {distance_range}")
    embeddings, labels, valid = _inputs(embeddings, labels, where)
    n = labels.shape[0]
    distances = _pairwise_distances(embeddings, distance)
    pair = valid[None, :] & valid[:, None] & ~jnp.eye(n, dtype=bool)
    same = labels[:, None] == labels[None, :]
    positive, negative = pair & same, pair & ~same

    if distance_range is None:
        upper = negative & jnp.triu(jnp.ones((n, n), bool), k=1)  # each unordered negative pair once
        sorted_negatives = jnp.sort(jnp.where(upper, distances, jnp.inf).ravel())
        count = jnp.sum(upper)
        d_min, d_max = (_far_distance(sorted_negatives, count, q) for q in far_range)
    else:
        d_min, d_max = (jnp.float32(d) for d in distance_range)
    thresholds = d_min + (d_max - d_min) * jnp.linspace(0.0, 1.0, num_thresholds)

    # Class of each anchor = index of its class's first valid item; ordered pairs are counted per anchor class
    # (each unordered pair twice, which leaves every rate unchanged).
    first = jnp.argmax(same & valid[None, :], axis=-1)
    # A pair with distance d counts for every threshold t_g >= d, i.e. g >= bucket; histogram then cumsum.
    bucket = jnp.searchsorted(thresholds, distances, side="left")
    segment = (first[:, None] * (num_thresholds + 1) + bucket).ravel()

    def counts(mask):
        hist = jax.ops.segment_sum(mask.ravel().astype(jnp.int32), segment, num_segments=n * (num_thresholds + 1))
        cumulative = jnp.cumsum(hist.reshape(n, num_thresholds + 1), axis=-1)
        return cumulative[:, :num_thresholds].astype(jnp.float32), cumulative[:, -1].astype(jnp.float32)

    (tp, n_pos), (fp, n_neg) = counts(positive), counts(negative)
    class_utility = _utility(tp, n_pos[:, None], fp, n_neg[:, None])
    class_valid = (first == jnp.arange(n)) & valid & (n_pos > 0) & (n_neg > 0)
    overall = _utility(tp.sum(0), n_pos.sum(), fp.sum(0), n_neg.sum())
    return ThresholdUtilities(thresholds, jnp.where(class_valid[:, None], class_utility, 0.0), class_valid,
                              overall)


def _trapezoid_mean(curves: Array) -> Array:
    """Mean over the threshold range by the trapezoidal rule on an even grid (last axis)."""
    g = curves.shape[-1]
    weights = jnp.ones(g).at[0].set(0.5).at[-1].set(0.5) / (g - 1)
    return curves @ weights


def opis(embeddings: Array, labels: Array, *, where: Optional[Array] = None, distance: str = "cosine",
         far_range: tuple[float, float] = (1e-2, 1e-1), distance_range: Optional[tuple[float, float]] = None,
         num_thresholds: int = 101, reference: str = "overall") -> Array:
    r"""Operating-Point-Inconsistency Score (Zhang et al. 2024): the mean over classes of the squared gap between
    the class utility and the reference utility, averaged over the calibration range (module docstring).

    Args: as in :func:`threshold_utilities`, plus ``reference``: ``"overall"`` (utility of all pairs pooled,
    default) or ``"mean"`` (mean of the class utilities). Returns a scalar (0 if no class has both a positive and
    a negative pair).
    """
    if reference not in ("overall", "mean"):
        raise ValueError(f"opis: reference must be 'overall' or 'mean', got {reference!r}")
    u = threshold_utilities(embeddings, labels, where=where, distance=distance, far_range=far_range,
                            distance_range=distance_range, num_thresholds=num_thresholds)
    n_classes = jnp.sum(u.class_valid)
    if reference == "overall":
        ref = u.overall_utility
    else:
        ref = jnp.sum(u.class_utility, axis=0) / jnp.maximum(n_classes, 1)
    gaps = _trapezoid_mean((u.class_utility - ref) ** 2)
    return safe_reduce(gaps, where=u.class_valid, reduce_fn=jnp.mean)


def eps_opis(embeddings: Array, labels: Array, *, epsilon: float = 0.05, where: Optional[Array] = None,
             distance: str = "cosine", far_range: tuple[float, float] = (1e-2, 1e-1),
             distance_range: Optional[tuple[float, float]] = None, num_thresholds: int = 101) -> Array:
    r"""epsilon-OPIS (Zhang et al. 2024): squared gap between the mean utility of the best and of the worst
    :math:`\lceil \epsilon T \rceil` classes at each threshold, averaged over the calibration range.

    Args: as in :func:`threshold_utilities`, plus ``epsilon`` in ``(0, 1]``. Returns a scalar (0 without classes).
    """
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"eps_opis: epsilon must be in (0, 1], got {epsilon}")
    u = threshold_utilities(embeddings, labels, where=where, distance=distance, far_range=far_range,
                            distance_range=distance_range, num_thresholds=num_thresholds)
    n = u.class_valid.shape[0]
    n_classes = jnp.sum(u.class_valid)
    # ceil(epsilon * T); the small slack keeps float32 round-off from adding a class when epsilon * T is whole.
    n_eps = jnp.maximum(jnp.ceil(epsilon * n_classes - 1e-4), 1)
    rank = jnp.arange(n)[:, None]
    # Per threshold: invalid classes sorted to the end (worst) / the start (best) so they are never picked.
    worst = jnp.sort(jnp.where(u.class_valid[:, None], u.class_utility, jnp.inf), axis=0)
    best = -jnp.sort(jnp.where(u.class_valid[:, None], -u.class_utility, jnp.inf), axis=0)
    pick = rank < n_eps
    mean_worst = jnp.sum(jnp.where(pick, worst, 0.0), axis=0) / n_eps
    mean_best = jnp.sum(jnp.where(pick, best, 0.0), axis=0) / n_eps
    return jnp.where(n_classes > 0, _trapezoid_mean((mean_best - mean_worst) ** 2), 0.0)
