"""Deep-metric-learning losses over a batch of embeddings with class labels, and the TCM regularizer.

Inputs are ``embeddings`` ``[..., batch, dim]`` and integer class ``labels`` ``[..., batch]``; two different
samples with equal labels form a positive pair, with different labels a negative pair. ``where``
(``[..., batch]``) masks padded samples (they form no pair; their embeddings may hold NaN/inf). ``weights``
(``[..., batch]``) weight each anchor. ``metric`` picks the geometry: ``"cosine"`` (similarity, higher = closer)
or ``"euclidean"`` (L2 distance of the embeddings as given; pytorch-metric-learning's default ``LpDistance``
L2-normalizes first, so pass normalized embeddings to match it).

Unreduced outputs keep the pair/triplet structure: ``[..., batch, batch]`` for pair losses,
``[..., batch, batch, batch]`` for triplets, ``[..., batch]`` per anchor.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import as_mask, masked_logsumexp, pair_mask, pairs, restrict, safe_reduce, sanitize
from ranking_jax.registry import register

Array = jax.Array
ReduceFn = Optional[Callable[..., Array]]

__all__ = ["contrastive_loss", "triplet_loss", "multi_similarity_loss", "tcm_regularizer"]

_METRICS = ("cosine", "euclidean")


def _prepare(fn: str, embeddings: Array, labels: Array, where: Optional[Array], metric: str):
    """Sanitized embeddings, the ``[..., B, B]`` similarity-or-distance matrix, positive and negative pair masks."""
    if metric not in _METRICS:
        raise ValueError(f"{fn}: metric must be one of {_METRICS}, got {metric!r}")
    if embeddings.ndim < 2 or labels.shape != embeddings.shape[:-1]:
        raise ValueError(f"{fn}: expected embeddings [..., batch, dim] and labels [..., batch], got "
                         f"{embeddings.shape} and {labels.shape}")
    where = as_mask(where)
    x = embeddings if where is None else jnp.where(where[..., None], embeddings, 0.0)
    if metric == "cosine":
        tiny = jnp.finfo(x.dtype).eps
        x = x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), tiny * tiny))
        m = x @ jnp.swapaxes(x, -1, -2)
    else:
        sq = jnp.sum(x * x, axis=-1)
        d2 = jnp.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * (x @ jnp.swapaxes(x, -1, -2)), 0.0)
        positive = d2 > 0
        m = jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)  # sqrt has no gradient at 0
    n = labels.shape[-1]
    not_self = ~jnp.eye(n, dtype=bool)
    valid = restrict(not_self, pair_mask(where))
    same = pairs(labels, jnp.equal)
    return where, m, valid & same, valid & ~same


def _anchor_weights(values: Array, weights: Optional[Array], where: Optional[Array], extra_dims: int) -> Array:
    """Multiplies ``values`` (anchor on axis ``-1 - extra_dims``) by the anchor's weight."""
    if weights is None:
        return values
    w = sanitize(jnp.asarray(weights, values.dtype), where)
    return values * jnp.reshape(w, w.shape + (1,) * extra_dims)


@register("losses.contrastive_loss", view="embeddings")
def contrastive_loss(embeddings: Array, labels: Array, *, pos_margin: float = 0.0, neg_margin: float = 1.0,
                     metric: str = "euclidean", where: Optional[Array] = None, weights: Optional[Array] = None,
                     reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Contrastive (pair) loss (Hadsell, Chopra, LeCun 2006; pytorch-metric-learning ``ContrastiveLoss``).

    For distances ``d``: positive pairs ``[d - m_{pos}]_+``, negative pairs ``[m_{neg} - d]_+``; for cosine
    similarities ``s``: positive ``[m_{pos} - s]_+``, negative ``[s - m_{neg}]_+``. Every ordered pair ``(i, j)``,
    ``i ≠ j``, counts (so each unordered pair twice, as in pytorch-metric-learning). ``reduce_fn=jnp.mean``
    averages over all valid pairs; pytorch-metric-learning's default instead averages the non-zero positive
    and non-zero negative terms separately and adds them (compute it from ``reduce_fn=None``).

    Returns:
      scalar, or ``[..., batch, batch]`` per-pair losses for ``reduce_fn=None`` (anchor on axis -2).
    """
    where, m, pos, neg = _prepare("contrastive_loss", embeddings, labels, where, metric)
    if metric == "cosine":
        pos_terms, neg_terms = jax.nn.relu(pos_margin - m), jax.nn.relu(m - neg_margin)
    else:
        pos_terms, neg_terms = jax.nn.relu(m - pos_margin), jax.nn.relu(neg_margin - m)
    losses = jnp.where(pos, pos_terms, jnp.where(neg, neg_terms, 0.0))
    losses = _anchor_weights(losses, weights, where, 1)
    return safe_reduce(losses, where=pos | neg, reduce_fn=reduce_fn)


@register("losses.triplet_loss", view="embeddings")
def triplet_loss(embeddings: Array, labels: Array, *, margin: float = 0.05, metric: str = "euclidean",
                 smooth: bool = False, where: Optional[Array] = None, weights: Optional[Array] = None,
                 reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Triplet margin loss over all in-batch triplets (Weinberger & Saul 2009; Schroff et al. 2015,
    arXiv 1503.03832; pytorch-metric-learning ``TripletMarginLoss(triplets_per_anchor="all")``).

    .. math::
        \ell_{apn} = [d_{ap} - d_{an} + m]_+ \quad(\text{cosine: } [s_{an} - s_{ap} + m]_+)

    for every anchor ``a``, positive ``p ≠ a`` with the anchor's label and negative ``n`` with another label;
    ``smooth=True`` uses ``softplus`` instead of ``[.]_+``. ``jnp.mean`` averages over all valid triplets
    ("batch all"); pytorch-metric-learning averages only the non-zero ones.

    Returns:
      scalar, or ``[..., batch, batch, batch]`` (anchor, positive, negative) for ``reduce_fn=None``.
    """
    where, m, pos, neg = _prepare("triplet_loss", embeddings, labels, where, metric)
    m_ap, m_an = m[..., :, :, None], m[..., :, None, :]
    violation = (m_an - m_ap if metric == "cosine" else m_ap - m_an) + margin
    losses = jax.nn.softplus(violation) if smooth else jax.nn.relu(violation)
    valid = pos[..., :, :, None] & neg[..., :, None, :]
    losses = _anchor_weights(losses, weights, where, 2)
    return safe_reduce(losses, where=valid, reduce_fn=reduce_fn)


@register("losses.multi_similarity_loss", view="embeddings")
def multi_similarity_loss(embeddings: Array, labels: Array, *, alpha: float = 2.0, beta: float = 50.0,
                          base: float = 0.5, epsilon: Optional[float] = None, where: Optional[Array] = None,
                          weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Multi-similarity loss (Wang et al., CVPR 2019, arXiv 1904.06627) on cosine similarities.

    .. math::
        \ell_i = \frac{1}{\alpha}\log\Big(1 + \sum_{p \in P_i} e^{-\alpha (S_{ip} - \lambda)}\Big)
               + \frac{1}{\beta}\log\Big(1 + \sum_{n \in N_i} e^{\beta (S_{in} - \lambda)}\Big)

    (``λ = base``; defaults of pytorch-metric-learning ``MultiSimilarityLoss``, which mines no pairs). With
    ``epsilon`` set, the paper's pair mining is applied first: keep negatives with ``S_in > min_p S_ip - ε`` and
    positives with ``S_ip < max_n S_in + ε`` (``MultiSimilarityMiner``, ε = 0.1 in the paper).

    Returns:
      scalar (mean over valid anchors), or ``[..., batch]`` per anchor for ``reduce_fn=None``.
    """
    where, s, pos, neg = _prepare("multi_similarity_loss", embeddings, labels, where, "cosine")
    if epsilon is not None:
        min_pos = jnp.min(jnp.where(pos, s, jnp.inf), axis=-1, keepdims=True)
        max_neg = jnp.max(jnp.where(neg, s, -jnp.inf), axis=-1, keepdims=True)
        pos, neg = pos & (s < max_neg + epsilon), neg & (s > min_pos - epsilon)
    # log(1 + sum exp(x)) = logaddexp(0, logsumexp(x)); an empty set gives log(1) = 0.
    pos_term = jnp.logaddexp(0.0, masked_logsumexp(-alpha * (s - base), pos, axis=-1)) / alpha
    neg_term = jnp.logaddexp(0.0, masked_logsumexp(beta * (s - base), neg, axis=-1)) / beta
    losses = _anchor_weights(pos_term + neg_term, weights, where, 0)
    anchors = jnp.ones(labels.shape, dtype=bool) if where is None else where
    return safe_reduce(losses, where=anchors, reduce_fn=reduce_fn)


@register("losses.tcm_regularizer", view="embeddings")
def tcm_regularizer(embeddings: Array, labels: Array, *, m_pos: float = 0.9, m_neg: float = 0.5,
                    lambda_pos: float = 1.0, lambda_neg: float = 1.0, where: Optional[Array] = None,
                    weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Threshold-Consistent Margin regularizer (Zhang et al., ICLR 2024, arXiv 2307.04047).

    On the cosine similarities of all in-batch pairs (``S⁺`` positive, ``S⁻`` negative pairs):

    .. math::
        \mathcal{L}_{TCM} = \lambda^+ \frac{\sum_{s \in S^+} (m^+ - s)\,\mathbb{1}[s \le m^+]}
                                          {\sum_{s \in S^+} \mathbb{1}[s \le m^+]}
                          + \lambda^- \frac{\sum_{s \in S^-} (s - m^-)\,\mathbb{1}[s \ge m^-]}
                                          {\sum_{s \in S^-} \mathbb{1}[s \ge m^-]}

    each term 0 when no pair is selected. Add it to any base loss: ``L = L_base + L_TCM``. Defaults are the
    paper's §5.2 values (pytorch-metric-learning ``ThresholdConsistentMarginLoss``). With ``weights``, pair
    ``(i, j)`` counts with weight ``weights_i`` in both sums (a weighted average).

    Returns:
      the regularizer per batch ``[...]`` reduced by ``reduce_fn`` (a scalar for one ``[batch, dim]`` input);
      batches with no valid pair are excluded from the mean.
    """
    where, s, pos, neg = _prepare("tcm_regularizer", embeddings, labels, where, "cosine")
    pair_w = jnp.ones_like(s)
    if weights is not None:
        pair_w = jnp.broadcast_to(sanitize(jnp.asarray(weights, s.dtype), where)[..., :, None], s.shape)

    def term(selected: Array, values: Array) -> Array:
        w = jnp.where(selected, pair_w, 0.0)
        total = jnp.sum(w, axis=(-2, -1))
        return jnp.sum(w * values, axis=(-2, -1)) / jnp.where(total > 0, total, 1.0)

    reg = lambda_pos * term(pos & (s <= m_pos), m_pos - s) + lambda_neg * term(neg & (s >= m_neg), s - m_neg)
    return safe_reduce(reg, where=jnp.any(pos | neg, axis=(-2, -1)), reduce_fn=reduce_fn)
