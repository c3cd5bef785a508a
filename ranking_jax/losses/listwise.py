"""Listwise ranking losses: Rax's softmax family and ListMLE, plus ListNet, position-aware ListMLE, ApproxNDCG and
NeuralNDCG (and its transposed form).

Shared arguments: ``scores``, ``labels`` ``[..., n]``; ``where`` optional ``[..., n]`` bool mask of valid items
(masked items may hold inf/NaN); ``segments`` optional ``[..., n]`` segment ids, each segment a list; ``weights``
optional ``[..., n]`` per-item weights; ``reduce_fn`` ``jnp.mean`` (over lists), ``jnp.sum`` or ``None``.

One value per list: unreduced output is ``[...]`` (``[..., n]`` with ``segments``, the value sitting on the first
valid item of each segment); ``jnp.mean`` averages over lists that have at least one valid item.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import (Array, ReduceFn, approx_cutoff, approx_ranks, default_discount_fn,
                                       default_gain_fn, ideal_dcg, in_segment_indices, list_sum, log_softmax,
                                       logcumsumexp, masked_logsumexp, normalize_probabilities, pair_mask, pairs,
                                       prepare, reduce_lists, restrict, safe_reduce, sanitize, segment_sum, softmax,
                                       sort_by)
from ranking_jax.registry import register

__all__ = ["softmax_loss", "poly1_softmax_loss", "unique_softmax_loss", "listmle_loss", "listnet_loss",
           "position_aware_listmle_loss", "approx_ndcg_loss", "neural_ndcg_loss", "neural_ndcg_transposed_loss"]


def _identity_label_fn(a: Array, where: Optional[Array] = None) -> Array:
    del where
    return a


@register("losses.softmax_loss", view="list")
def softmax_loss(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                 weights: Optional[Array] = None, label_fn: Callable[..., Array] = _identity_label_fn,
                 reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Softmax cross-entropy :math:`\ell(s, y) = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}}`.

    Labels are used as-is (multiplied by ``weights``) unless ``label_fn`` maps them to probabilities, e.g.
    ``label_fn=normalize_probabilities`` (Cao et al. 2007, "Learning to rank: from pairwise approach to listwise
    approach"; Bruch et al. 2019, "An analysis of the softmax cross entropy loss for learning-to-rank").

    Args:
      weights: optional ``[..., n]`` per-item weights multiplying the labels.
      label_fn: ``label_fn(labels, where=where)`` maps labels to target probabilities.
    """
    scores, labels, weights, where = prepare("softmax_loss", scores, labels, where=where, segments=segments,
                                             weights=weights)
    if weights is not None:
        labels = labels * weights
    targets = sanitize(label_fn(labels, where=where), where)
    loss = -list_sum(targets * log_softmax(scores, where=where, segments=segments), where, segments)
    return reduce_lists(loss, where, segments, reduce_fn)


@register("losses.poly1_softmax_loss", view="list")
def poly1_softmax_loss(scores: Array, labels: Array, *, epsilon: float = 1.0, where: Optional[Array] = None,
                       segments: Optional[Array] = None, weights: Optional[Array] = None,
                       reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Poly-1 softmax loss :math:`\ell = \mathrm{softmax}(s, y) + \epsilon (1 - p_t)`,
    :math:`p_t = \sum_i \frac{y_i}{\sum_j y_j} \frac{e^{s_i}}{\sum_j e^{s_j}}` (Leng et al. 2022, "PolyLoss").

    Args:
      epsilon: weight of the first polynomial term.
      weights: optional ``[..., n]`` per-item weights multiplying the labels.
    """
    scores, labels, weights, where = prepare("poly1_softmax_loss", scores, labels, where=where, segments=segments,
                                             weights=weights)
    if weights is not None:
        labels = labels * weights
    log_p = log_softmax(scores, where=where, segments=segments)
    ce = -list_sum(labels * log_p, where, segments)
    targets = normalize_probabilities(labels, where=where, segments=segments)
    pt = list_sum(targets * jnp.exp(log_p), where, segments)
    if segments is None:  # a list without valid items has no (1 - pt) term
        has_items = scores.shape[-1] > 0 if where is None else jnp.any(where, axis=-1)
        pt = jnp.where(has_items, pt, 1.0)
    loss = ce + epsilon * (1.0 - pt)
    return reduce_lists(loss, where, segments, reduce_fn)


@register("losses.unique_softmax_loss", view="list")
def unique_softmax_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                        segments: Optional[Array] = None, weights: Optional[Array] = None,
                        gain_fn: Optional[Callable[[Array], Array]] = default_gain_fn,
                        reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Unique softmax loss (Zhu & Klabjan 2020, "Listwise learning to rank by exploring unique ratings"):

    .. math::
        \ell(s, y) = -\sum_i \op{gain}(y_i) \log \frac{e^{s_i}}{e^{s_i} + \sum_{j : y_j < y_i} e^{s_j}}

    Args:
      gain_fn: per-item boost ``gain(y)`` (default ``2^y - 1``; ``None``: no boost).
    """
    scores, labels, weights, where = prepare("unique_softmax_loss", scores, labels, where=where, segments=segments,
                                             weights=weights)
    n = scores.shape[-1]
    competitors = pairs(labels, operator.gt) | jnp.eye(n, dtype=bool)
    competitors = restrict(competitors, pair_mask(where, segments))
    lse = masked_logsumexp(jnp.broadcast_to(jnp.expand_dims(scores, -2), competitors.shape), competitors)
    log_p = sanitize(scores - sanitize(lse, where), where)
    if weights is not None:
        log_p = log_p * weights
    if gain_fn is not None:
        log_p = log_p * gain_fn(labels)
    loss = -list_sum(log_p, where, segments)
    return reduce_lists(loss, where, segments, reduce_fn)


def _plackett_luce_log_likelihoods(scores: Array, labels: Array, *, key, where, segments):
    """Sorts by label and returns ``(log P_i, valid_sorted, sorted_position)``: the per-position log-likelihood
    ``s_(i) - log sum_{k >= i} e^{s_(k)}`` of the label order, its validity mask and 1-based position."""
    valid = jnp.ones(scores.shape, dtype=bool) if where is None else where
    scores_sorted, valid_sorted = sort_by(labels, [scores, valid], where=where, segments=segments, key=key)
    if segments is None:
        lse = logcumsumexp(scores_sorted, where=valid_sorted, reverse=True)
        position = jax.lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1) + 1
    else:
        # Sorted blocks sit at their segment's positions in array order; k >= i within the segment.
        later = pairs(jnp.arange(scores.shape[-1]), operator.le) & pair_mask(valid_sorted, segments)
        lse = masked_logsumexp(jnp.broadcast_to(jnp.expand_dims(scores_sorted, -2), later.shape), later)
        position = in_segment_indices(segments) + 1
    return sanitize(scores_sorted - sanitize(lse, valid_sorted), valid_sorted), valid_sorted, position


@register("losses.listmle_loss", view="list", key=True)
def listmle_loss(scores: Array, labels: Array, *, key: Optional[Array] = None, where: Optional[Array] = None,
                 segments: Optional[Array] = None, reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""ListMLE (Xia et al. 2008, "Listwise approach to learning to rank: theory and algorithm"):

    .. math::
        \ell(s, y) = -\sum_i \log \frac{e^{s_{\pi(i)}}}{\sum_{k \ge i} e^{s_{\pi(k)}}}

    with :math:`\pi` the order by descending label. Label ties keep array order unless ``key`` breaks them at
    random (pass a key when labels tie).

    Args:
      key: optional PRNG key for random tie-breaking of labels.
    """
    scores, labels, _, where = prepare("listmle_loss", scores, labels, where=where, segments=segments)
    log_p, valid_sorted, _ = _plackett_luce_log_likelihoods(scores, labels, key=key, where=where, segments=segments)
    loss = -list_sum(log_p, valid_sorted, segments)
    return reduce_lists(loss, where, segments, reduce_fn)


def _default_position_weights(position: Array, num_valid: Array) -> Array:
    """``2^(n-i) - 1`` normalized to sum to 1 over ``i = 1..n``, written without ``2^n`` (no overflow)."""
    p, n = position.astype(jnp.float32), num_valid.astype(jnp.float32)
    denominator = 1.0 - (n + 1.0) * jnp.exp2(-n)
    return jnp.where(denominator > 0, (jnp.exp2(-p) - jnp.exp2(-n)) / jnp.where(denominator > 0, denominator, 1.0),
                     0.0)


@register("losses.position_aware_listmle_loss", view="list", key=True)
def position_aware_listmle_loss(scores: Array, labels: Array, *, key: Optional[Array] = None,
                                where: Optional[Array] = None, segments: Optional[Array] = None,
                                position_weight_fn: Optional[Callable[[Array, Array], Array]] = None,
                                reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Position-aware ListMLE, p-ListMLE (Lan et al. 2014, "Position-Aware ListMLE: A Sequential Learning
    Process for Ranking"):

    .. math::
        \ell(s, y) = -\sum_{i=1}^{n} \alpha(i) \log \frac{e^{s_{\pi(i)}}}{\sum_{k \ge i} e^{s_{\pi(k)}}}

    :math:`\pi` the order by descending label, :math:`n` the number of valid items. Default
    :math:`\alpha(i) = (2^{n-i} - 1) / \sum_{k=1}^{n} (2^{n-k} - 1)` (the decreasing weights of TF-Ranking's
    ``ListMLELambdaWeight``, normalized to sum to 1 per list as sentence-transformers' ``PListMLELoss`` does, so
    they do not overflow for long lists). ``position_weight_fn(position, num_valid)`` (1-based positions) replaces
    them, e.g. ``lambda i, n: 2.0 ** (n - i) - 1`` for TF-Ranking's unnormalized weights.

    Args:
      key: optional PRNG key for random tie-breaking of labels.
      position_weight_fn: ``(position, num_valid) -> alpha``, both ``[..., n]``.
    """
    scores, labels, _, where = prepare("position_aware_listmle_loss", scores, labels, where=where, segments=segments)
    log_p, valid_sorted, position = _plackett_luce_log_likelihoods(scores, labels, key=key, where=where,
                                                                   segments=segments)
    if segments is None:
        num_valid = jnp.sum(valid_sorted, axis=-1, keepdims=True)
    else:
        num_valid = segment_sum(valid_sorted.astype(jnp.int32), segments)
    alpha = (position_weight_fn or _default_position_weights)(position, jnp.broadcast_to(num_valid, position.shape))
    loss = -list_sum(sanitize(alpha, valid_sorted) * log_p, valid_sorted, segments)
    return reduce_lists(loss, where, segments, reduce_fn)


@register("losses.listnet_loss", view="list")
def listnet_loss(scores: Array, labels: Array, *, where: Optional[Array] = None, segments: Optional[Array] = None,
                 reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""ListNet (Cao et al. 2007, "Learning to rank: from pairwise approach to listwise approach"), top-one
    probabilities of labels as targets:

    .. math::
        \ell(s, y) = -\sum_i \frac{e^{y_i}}{\sum_j e^{y_j}} \log \frac{e^{s_i}}{\sum_j e^{s_j}}

    As allRank's ``listNet`` (which adds ``1e-10`` inside the log; we do not).

    """
    scores, labels, _, where = prepare("listnet_loss", scores, labels, where=where, segments=segments)
    targets = softmax(labels, where=where, segments=segments)
    loss = -list_sum(targets * log_softmax(scores, where=where, segments=segments), where, segments)
    return reduce_lists(loss, where, segments, reduce_fn)


@register("losses.approx_ndcg_loss", view="list")
def approx_ndcg_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                     segments: Optional[Array] = None, weights: Optional[Array] = None, topn: Optional[int] = None,
                     temperature: float = 1.0, gain_fn: Callable[[Array], Array] = default_gain_fn,
                     discount_fn: Callable[[Array], Array] = default_discount_fn,
                     reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""ApproxNDCG (Qin, Liu, Li 2010, "A general approximation framework for direct optimization of information
    retrieval measures"; Bruch et al. 2019, "Revisiting approximate metric optimization in the age of deep neural
    networks"): minus NDCG with smooth ranks

    .. math::
        \ell(s, y) = -\frac{1}{\mathrm{IDCG}} \sum_i \frac{\op{gain}(y_i)}{\log_2(1 + \hat r_i)},\quad
        \hat r_i = 1 + \sum_{j \ne i} \sigma\Big(\frac{s_j - s_i}{T}\Big)

    (allRank's ``approxNDCGLoss`` with ``alpha = 1/T``; Rax's ``approx_t12n(ndcg_metric)``). With ``topn``, each
    gain is also multiplied by the soft cut-off :math:`\sigma((\hat c - \hat r_i)/T)`, :math:`\hat c` halfway
    between the ``topn``-th and next smooth rank. Unlike Rax 0.4, masked items do not take part in placing that
    cut-off. ``weights`` multiply the gains (the ideal ordering uses the weighted gains).

    Args:
      weights: optional ``[..., n]`` per-item gain weights.
      topn: optional rank cutoff.
      temperature: sigmoid temperature ``T`` (``-> 0``: exact ranks).
      gain_fn: maps labels to gains (default ``2^y - 1``).
      discount_fn: maps (smooth) ranks to discounts (default ``1 / log2(r + 1)``).
    """
    scores, labels, weights, where = prepare("approx_ndcg_loss", scores, labels, where=where, segments=segments,
                                             weights=weights)

    def step_fn(x):
        return jax.nn.sigmoid(x / temperature)

    smooth_ranks = approx_ranks(scores, where=where, segments=segments, step_fn=step_fn)
    gains = gain_fn(labels)
    if weights is not None:
        gains = gains * weights
    item_dcg = gains * discount_fn(smooth_ranks)
    if topn is not None:
        item_dcg = item_dcg * approx_cutoff(-smooth_ranks, topn, where=where, segments=segments, step_fn=step_fn)
    idcg = ideal_dcg(gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn)
    loss = -list_sum(item_dcg, where, segments) / jnp.where(idcg == 0.0, 1.0, idcg)
    return reduce_lists(loss, where, segments, reduce_fn)


def _neural_sort(scores: Array, valid: Array, temperature: float) -> Array:
    """NeuralSort relaxed permutation (Grover et al. 2019) over the valid items: row ``i`` (1-based position,
    ``i <= n_valid``) is ``softmax_j(((n_valid + 1 - 2i) s_j - sum_k |s_j - s_k|) / T)`` over valid ``j``;
    rows past ``n_valid`` are 0."""
    n = scores.shape[-1]
    both = pairs(valid, operator.and_)
    abs_diffs = jnp.where(both, jnp.abs(pairs(scores, operator.sub)), 0.0)
    row_sums = jnp.sum(abs_diffs, axis=-1)
    num_valid = jnp.sum(valid, axis=-1, keepdims=True).astype(scores.dtype)
    position = jnp.arange(1, n + 1, dtype=scores.dtype)
    scaling = num_valid + 1.0 - 2.0 * position  # [..., n] over positions
    logits = (jnp.expand_dims(scaling, -1) * jnp.expand_dims(scores, -2) - jnp.expand_dims(row_sums, -2))
    rows_valid = position <= num_valid
    cell_valid = jnp.expand_dims(rows_valid, -1) & jnp.expand_dims(valid, -2)
    log_p = log_softmax(logits / temperature, where=cell_valid)
    return jnp.where(cell_valid, jnp.exp(log_p), 0.0)


@functools.partial(jax.jit, static_argnames=("iterations", "tol", "eps"))  # eager calls reuse the compiled scan
def _sinkhorn(p_hat: Array, *, iterations: int, tol: float, eps: float = 1e-10) -> Array:
    """Alternating column / row normalization (allRank's ``sinkhorn_scaling``), per list, stopping (freezing)
    once all valid row and column sums are within ``tol`` of 1. Computed on scaling vectors
    ``P = diag(u) P_hat diag(v)`` so that reverse-mode memory is ``O(n)`` per iteration."""
    cols_valid = jnp.any(p_hat > 0, axis=-2)
    u = jnp.ones(p_hat.shape[:-1], p_hat.dtype)
    v = jnp.ones(p_hat.shape[:-2] + p_hat.shape[-1:], p_hat.dtype)
    done = jnp.zeros(p_hat.shape[:-2], dtype=bool)

    def body(carry, _):
        u, v, done = carry
        col_sums = v * jnp.einsum("...ij,...i->...j", p_hat, u)
        # Empty (masked) rows/columns keep their scale; dividing them by eps would overflow over the iterations.
        v_new = jnp.where(col_sums > 0, v / jnp.maximum(col_sums, eps), v)
        row_sums = u * jnp.einsum("...ij,...j->...i", p_hat, v_new)
        u_new = jnp.where(row_sums > 0, u / jnp.maximum(row_sums, eps), u)
        col_err = jnp.abs(v_new * jnp.einsum("...ij,...i->...j", p_hat, u_new) - 1.0)
        converged = jnp.max(jnp.where(cols_valid, col_err, 0.0), axis=-1, initial=0.0) < tol
        keep = jnp.expand_dims(done, -1)
        return (jnp.where(keep, u, u_new), jnp.where(keep, v, v_new), done | converged), None

    (u, v, _), _ = jax.lax.scan(body, (u, v, done), None, length=iterations)
    return jnp.expand_dims(u, -1) * p_hat * jnp.expand_dims(v, -2)


def _neural_ndcg(fn, scores, labels, *, where, topn, temperature, gain_fn, discount_fn, sinkhorn_iterations,
                 sinkhorn_tol, reduce_fn, transposed):
    scores, labels, _, where = prepare(fn, scores, labels, where=where)
    valid = jnp.ones(scores.shape, dtype=bool) if where is None else where
    p_hat = _sinkhorn(_neural_sort(scores, valid, temperature), iterations=sinkhorn_iterations, tol=sinkhorn_tol)
    gains = sanitize(gain_fn(labels), valid)
    n = scores.shape[-1]
    position_discounts = discount_fn(jnp.arange(1, n + 1, dtype=scores.dtype))
    if topn is not None:
        position_discounts = jnp.where(jnp.arange(1, n + 1) <= topn, position_discounts, 0.0)
    if transposed:
        # Expected discount of each item: sum_i P[i, j] d(i).
        dcg = jnp.sum(gains * jnp.einsum("...ij,i->...j", p_hat, position_discounts), axis=-1)
    else:
        # Expected gain at each position: sum_j P[i, j] g(j).
        dcg = jnp.sum(jnp.einsum("...ij,...j->...i", p_hat, gains) * position_discounts, axis=-1)
    idcg = ideal_dcg(gains, where=where, topn=topn, discount_fn=discount_fn)
    has_relevant = idcg > 0
    ndcg = jnp.where(has_relevant, dcg / (idcg + 1e-10), 0.0)
    return safe_reduce(-ndcg, where=has_relevant & jnp.any(valid, axis=-1), reduce_fn=reduce_fn)


_NEURAL_NDCG_ARGS = """
    Args:
      topn: optional rank cutoff ``k``.
      temperature: NeuralSort temperature :math:`\\tau`.
      gain_fn: maps labels to gains (default ``2^y - 1``; allRank ``powered_relevancies=False`` is identity).
      discount_fn: maps 1-based positions to discounts (default ``1 / log2(r + 1)``).
      sinkhorn_iterations: maximum number of Sinkhorn iterations (allRank ``max_iter``).
      sinkhorn_tol: Sinkhorn stops once row and column sums are within this of 1.
      reduce_fn: ``jnp.mean`` (over lists with a relevant item), ``jnp.sum`` or ``None`` (``[...]``).

    Returns:
      The loss (minus the relaxed NDCG).
"""


@register("losses.neural_ndcg_loss", view="list")
def neural_ndcg_loss(scores: Array, labels: Array, *, where: Optional[Array] = None, topn: Optional[int] = None,
                     temperature: float = 1.0, gain_fn: Callable[[Array], Array] = default_gain_fn,
                     discount_fn: Callable[[Array], Array] = default_discount_fn, sinkhorn_iterations: int = 50,
                     sinkhorn_tol: float = 1e-6, reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""NeuralNDCG (Pobrotyn & Białobrzeski 2021, "NeuralNDCG: Direct Optimisation of a Ranking Metric via
    Differentiable Relaxation of Sorting"), allRank's deterministic ``neuralNDCG``:

    .. math::
        \ell(s, y) = -\frac{1}{\mathrm{IDCG@k}} \sum_{i=1}^{k} d(i) \sum_j \hat P_{ij}\, \op{gain}(y_j)

    :math:`\hat P` is the NeuralSort relaxation of the sorting permutation (Grover et al. 2019, "Stochastic
    optimization of sorting networks via continuous relaxations"),
    :math:`\hat P_{i\cdot} = \mathrm{softmax}(((n + 1 - 2i) s - A_s \mathbf{1}) / \tau)`,
    :math:`(A_s)_{jk} = |s_j - s_k|`, made doubly stochastic by Sinkhorn scaling; :math:`n` counts valid items.
    Lists without a relevant item (IDCG = 0) get 0 and are left out of the mean, as in allRank. For the stochastic
    variant, wrap with :func:`gumbel_t12n`. Cost: :math:`O(n^2)` memory and ``sinkhorn_iterations`` matrix-vector
    products per list.
    """
    return _neural_ndcg("neural_ndcg_loss", scores, labels, where=where, topn=topn, temperature=temperature,
                        gain_fn=gain_fn, discount_fn=discount_fn, sinkhorn_iterations=sinkhorn_iterations,
                        sinkhorn_tol=sinkhorn_tol, reduce_fn=reduce_fn, transposed=False)


@register("losses.neural_ndcg_transposed_loss", view="list")
def neural_ndcg_transposed_loss(scores: Array, labels: Array, *, where: Optional[Array] = None,
                                topn: Optional[int] = None, temperature: float = 1.0,
                                gain_fn: Callable[[Array], Array] = default_gain_fn,
                                discount_fn: Callable[[Array], Array] = default_discount_fn,
                                sinkhorn_iterations: int = 50, sinkhorn_tol: float = 1e-6,
                                reduce_fn: Optional[ReduceFn] = jnp.mean) -> Array:
    r"""Transposed NeuralNDCG (Pobrotyn & Białobrzeski 2021): each item's gain times its *expected* discount,

    .. math::
        \ell(s, y) = -\frac{1}{\mathrm{IDCG@k}} \sum_j \op{gain}(y_j) \sum_{i=1}^{k} \hat P_{ij}\, d(i)

    with :math:`\hat P` as in :func:`neural_ndcg_loss`. Note that for the same :math:`\hat P` both forms are the
    same bilinear form :math:`d^\top \hat P g`, so they give the same value (in allRank too, which computes both
    from the same Sinkhorn-scaled :math:`\hat P`); the transposed form is kept for API parity with allRank and
    the paper. allRank's ``neuralNDCG_transposed`` normalizes by the
    IDCG with ``2^y - 1`` gains even when ``powered_relevancies=False``; we use ``gain_fn`` for both.
    """
    return _neural_ndcg("neural_ndcg_transposed_loss", scores, labels, where=where, topn=topn, temperature=temperature,
                        gain_fn=gain_fn, discount_fn=discount_fn, sinkhorn_iterations=sinkhorn_iterations,
                        sinkhorn_tol=sinkhorn_tol, reduce_fn=reduce_fn, transposed=True)


for _fn in (neural_ndcg_loss, neural_ndcg_transposed_loss):
    if _fn.__doc__:  # None under python -OO
        _fn.__doc__ += _NEURAL_NDCG_ARGS
