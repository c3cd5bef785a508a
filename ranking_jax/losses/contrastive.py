"""Contrastive losses over query-document score matrices, and CoDiEmb's order-aware regression losses.

Score-matrix losses take ``scores`` of shape ``[..., num_queries, num_docs]`` (e.g. ``q @ d.T`` for in-batch
negatives, gathered across devices for global negatives, with extra hard-negative columns appended). Row ``i``
is query ``i``; its positives are given by ``labels`` (``[..., num_queries, num_docs]``, ``> 0`` = positive) or,
by default, by the column ``i * group_size`` (``group_size = 1``: the diagonal; ``group_size = 1 + n``: each
query's positive followed by its ``n`` hard negatives, the Tevatron/E2Rank layout). Every other valid column is a
negative. ``where`` (broadcastable to ``scores``) masks padded or filtered entries; ``weights`` are per query
(``[..., num_queries]``). ``reduce_fn=None`` returns one value per query.

CoDiEmb's STS losses (``pearson_loss``, ``rank_kl_loss``, ``pro_loss``) take ``[..., list_size]`` predicted
similarities and gold scores, like Rax's listwise losses.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ranking_jax.ops import (apply_weights, as_mask, list_mask, log_softmax, masked_logsumexp, pair_mask,
                                       pairs, restrict, safe_reduce, sanitize)
from ranking_jax.registry import register

Array = jax.Array
ReduceFn = Optional[Callable[..., Array]]

__all__ = ["infonce_loss", "soft_infonce_loss", "e2rank_loss", "pearson_loss", "rank_kl_loss", "pro_loss"]


def _check_positive(fn: str, name: str, value) -> None:
    if isinstance(value, (int, float)) and value <= 0:
        raise ValueError(f"{fn}: {name} must be > 0, got {value}")


def _positives(fn: str, shape: tuple[int, ...], labels: Optional[Array], group_size: int) -> Array:
    """``[..., num_queries, num_docs]`` bool mask of positive (query, doc) entries."""
    if labels is not None:
        return jnp.broadcast_to(jnp.asarray(labels) > 0, shape)
    if len(shape) < 2:
        raise ValueError(f"{fn}: scores must be [..., num_queries, num_docs] when labels is None, got shape {shape}")
    num_queries, num_docs = shape[-2], shape[-1]
    if group_size < 1 or (num_queries - 1) * group_size >= num_docs:
        raise ValueError(f"{fn}: the positive of query i is column i * group_size, which needs num_docs > "
                         f"(num_queries - 1) * group_size; got num_queries={num_queries}, num_docs={num_docs}, "
                         f"group_size={group_size}. Pass labels= (a positive mask) or fix group_size.")
    cols = jnp.arange(num_docs)[None, :]
    rows = jnp.arange(num_queries)[:, None] * group_size
    return jnp.broadcast_to(cols == rows, shape)


def _valid(shape: tuple[int, ...], where: Optional[Array]) -> Array:
    return jnp.ones(shape, dtype=bool) if where is None else jnp.broadcast_to(as_mask(where), shape)


@register("losses.infonce_loss", view="matrix")
def infonce_loss(scores: Array, *, labels: Optional[Array] = None, group_size: int = 1, temperature: float = 1.0,
                 multi_positive: str = "each", where: Optional[Array] = None, weights: Optional[Array] = None,
                 reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""InfoNCE / multiple-negatives ranking loss (van den Oord et al. 2018, arXiv 1807.03748; Henderson et al.
    2017, arXiv 1705.00652) over a ``[..., num_queries, num_docs]`` score matrix.

    With ``z = scores / temperature``, positives ``P_i`` and negatives ``N_i`` of row ``i``:

    * ``multi_positive="each"`` (NT-Xent / SupCon-out / CoDiEmb's multi-positive IR loss): every positive is
      contrasted with the negatives only, averaged over positives:
      :math:`\ell_i = \frac{1}{|P_i|}\sum_{p \in P_i} -\log \frac{e^{z_p}}{e^{z_p} + \sum_{n \in N_i} e^{z_n}}`
    * ``multi_positive="any"`` (MIL-NCE, BlockRank): :math:`\ell_i = -\log \frac{\sum_{p\in P_i} e^{z_p}}
      {\sum_{j \in P_i \cup N_i} e^{z_j}}`

    Both equal the standard InfoNCE ``-log softmax(z_i)[pos]`` when each row has one positive. Rows without a
    valid positive are excluded from the mean.

    Args:
      scores: ``[..., num_queries, num_docs]`` similarities (e.g. cosine or dot products).
      labels: optional positive mask/labels, broadcastable to ``scores`` (``> 0`` = positive). Default: column
        ``i * group_size`` is the positive of row ``i``.
      group_size: documents per query in the default layout (1 = diagonal).
      temperature: divides the scores (E2Rank 0.03, CoDiEmb 0.02; sentence-transformers' ``scale=20`` is 0.05).
      multi_positive: ``"each"`` or ``"any"``, see above.
      where: optional bool mask broadcastable to ``scores`` (False = neither positive nor negative).
      weights: optional per-query weights ``[..., num_queries]``.
      reduce_fn: ``jnp.mean`` over queries with a positive, ``jnp.sum`` or None (``[..., num_queries]``).
    """
    _check_positive("infonce_loss", "temperature", temperature)
    if multi_positive not in ("each", "any"):
        raise ValueError(f"infonce_loss: multi_positive must be 'each' or 'any', got {multi_positive!r}")
    valid = _valid(scores.shape, where)
    pos = _positives("infonce_loss", scores.shape, labels, group_size) & valid
    neg = valid & ~pos
    z = sanitize(scores, valid) / temperature
    row_valid = jnp.any(pos, axis=-1)
    if multi_positive == "each":
        lse_neg = masked_logsumexp(z, neg, axis=-1, keepdims=True)
        per_pos = sanitize(jax.nn.softplus(lse_neg - z), pos)
        losses = jnp.sum(per_pos, axis=-1) / jnp.maximum(jnp.sum(pos, axis=-1), 1).astype(z.dtype)
    else:
        lse_pos = sanitize(masked_logsumexp(z, pos, axis=-1), row_valid)
        lse_all = sanitize(masked_logsumexp(z, valid, axis=-1), row_valid)
        losses = lse_all - lse_pos
    losses = apply_weights(losses, weights, row_valid)
    return safe_reduce(losses, where=row_valid, reduce_fn=reduce_fn)


@register("losses.soft_infonce_loss", view="teacher")
def soft_infonce_loss(scores: Array, teacher_scores: Array, *, temperature: float = 1.0,
                      teacher_temperature: Optional[float] = None, negative_margin: Optional[float] = None,
                      negative_ratio: Optional[float] = None, labels: Optional[Array] = None, group_size: int = 1,
                      where: Optional[Array] = None, weights: Optional[Array] = None,
                      reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""Soft-label InfoNCE with a positive-aware hard-negative filter (LG-ANNA-Embedding, arXiv 2506.07438).

    The one-hot InfoNCE target is replaced by the teacher's distribution over the row's kept candidates:

    .. math::
        \ell_i = -\sum_{j \in K_i} \operatorname{softmax}_{K_i}(t_i / T_t)_j\,
                  \log \operatorname{softmax}_{K_i}(s_i / T)_j

    Positive-aware filter (NV-Retriever style, arXiv 2407.15831): with ``t⁺_i`` the lowest teacher score among
    row ``i``'s positives, a non-positive candidate ``j`` is dropped (from both distributions) unless
    ``t_ij < t⁺_i - negative_margin`` and ``t_ij < negative_ratio · t⁺_i`` (each test only when its option is
    set; NV-Retriever's best is ``negative_ratio=0.95``). These catch likely false negatives. LG-ANNA's exact
    margin and temperatures were not published; both filters are off by default.

    Args:
      scores: ``[..., num_queries, num_docs]`` student similarities.
      teacher_scores: same shape, teacher relevance scores (no gradient).
      temperature: student temperature ``T``; ``teacher_temperature`` defaults to it.
      negative_margin, negative_ratio: the filter, see above (positives come from ``labels``/``group_size`` as
        in :func:`infonce_loss` and are only needed when a filter is set).
      where: optional mask broadcastable to ``scores``.
      weights: optional per-query weights ``[..., num_queries]``.
      reduce_fn: ``jnp.mean`` over rows with a kept candidate, ``jnp.sum`` or None (``[..., num_queries]``).
    """
    _check_positive("soft_infonce_loss", "temperature", temperature)
    teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
    _check_positive("soft_infonce_loss", "teacher_temperature", teacher_temperature)
    keep = _valid(scores.shape, where)
    t = sanitize(jax.lax.stop_gradient(teacher_scores), keep)
    if negative_margin is not None or negative_ratio is not None:
        pos = _positives("soft_infonce_loss", scores.shape, labels, group_size) & keep
        t_pos = jnp.min(jnp.where(pos, t, jnp.inf), axis=-1, keepdims=True)
        ok = jnp.isfinite(t_pos)
        t_pos = jnp.where(ok, t_pos, 0.0)
        keep_neg = ok
        if negative_margin is not None:
            keep_neg = keep_neg & (t < t_pos - negative_margin)
        if negative_ratio is not None:
            keep_neg = keep_neg & (t < negative_ratio * t_pos)
        keep = pos | (keep & keep_neg)
    row_valid = jnp.any(keep, axis=-1)
    log_q = log_softmax(sanitize(scores, keep) / temperature, where=keep)
    p = sanitize(jnp.exp(log_softmax(sanitize(t, keep) / teacher_temperature, where=keep)), keep)
    losses = -jnp.sum(p * log_q, axis=-1)
    losses = apply_weights(losses, weights, row_valid)
    return safe_reduce(losses, where=row_valid, reduce_fn=reduce_fn)


def _ranknet_per_list(scores: Array, labels: Array, where: Optional[Array]) -> tuple[Array, Array]:
    """Mean over pairs ``labels_i > labels_j`` of ``log(1 + exp(-(s_i - s_j)))`` per list, and list validity."""
    s, y = sanitize(scores, where), sanitize(labels, where)
    mask = restrict(pairs(y, jnp.greater), pair_mask(where))
    terms = sanitize(jax.nn.softplus(-pairs(s, jnp.subtract)), mask)
    count = jnp.sum(mask, axis=(-2, -1))
    return jnp.sum(terms, axis=(-2, -1)) / jnp.maximum(count, 1).astype(s.dtype), count > 0


@register("losses.e2rank_loss", view="e2rank")
def e2rank_loss(scores: Array, rerank_scores: Array, rerank_labels: Array, *, temperature: float = 0.03,
                scale: float = 10.0, ranknet_weight: float = 2.0, labels: Optional[Array] = None,
                group_size: int = 1, where: Optional[Array] = None, rerank_where: Optional[Array] = None,
                weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""E2Rank's joint loss (Liu et al. 2025, arXiv 2510.22733; ``Alibaba-NLP/E2Rank`` ``src/modeling.py``).

    .. math::
        \ell_q = \mathrm{InfoNCE}_q(\text{scores} / \tau)
                 + \lambda \operatorname{mean}_{(i,j):\,y_i > y_j} \log\big(1 + e^{-c\,(r_i - r_j)}\big)

    ``scores`` ``[..., Q, num_docs]`` are query-document cosines for the embedding loss (:func:`infonce_loss`
    with ``labels``/``group_size``/``where``); ``rerank_scores`` ``[..., Q, K]`` are cosines between query
    ``q``'s listwise pseudo-query embedding and its ``K`` candidates, ``rerank_labels`` their relevance (E2Rank
    uses ``K - teacher_rank``). Defaults are the paper's training script (τ = 0.03, c = 10, λ = 2; the code's
    argument defaults are c = 5, λ = 1). The RankNet part is averaged per query; E2Rank pools the pairs of the
    whole batch, which is the same when every list has the same number of pairs (full teacher permutations).

    Args:
      weights: optional per-query weights ``[..., Q]``.
      reduce_fn: ``jnp.mean`` over queries, ``jnp.sum`` or None (``[..., Q]``).
    """
    emb = infonce_loss(scores, labels=labels, group_size=group_size, temperature=temperature, where=where,
                       reduce_fn=None)
    emb_valid = jnp.any(_positives("e2rank_loss", scores.shape, labels, group_size) & _valid(scores.shape, where),
                        axis=-1)
    rank, rank_valid = _ranknet_per_list(scale * rerank_scores, rerank_labels, as_mask(rerank_where))
    losses = emb + ranknet_weight * rank
    row_valid = emb_valid | rank_valid
    losses = apply_weights(losses, weights, row_valid)
    return safe_reduce(losses, where=row_valid, reduce_fn=reduce_fn)


def _label_variance_ok(y: Array, where: Optional[Array]) -> Array:
    """True for lists whose valid labels are not all equal (and that have at least two valid items)."""
    hi = jnp.max(y, axis=-1, where=where, initial=-jnp.inf)
    lo = jnp.min(y, axis=-1, where=where, initial=jnp.inf)
    return hi > lo


@register("losses.pearson_loss", view="list")
def pearson_loss(scores: Array, labels: Array, *, eps: float = 1e-12, where: Optional[Array] = None,
                 weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""``1 - Pearson correlation`` between predicted and gold similarities (CoDiEmb, arXiv 2508.11442).

    .. math::
        \ell = 1 - \frac{\operatorname{cov}_w(s, y)}{\sqrt{\operatorname{var}_w(s) + \epsilon}\,
               \sqrt{\operatorname{var}_w(y) + \epsilon}}

    with population (weighted, if ``weights``) moments over the valid items of the list (CoDiEmb correlates the
    whole all-gathered batch: pass it as one list). A list whose valid gold scores are all equal has no
    correlation; it yields 0 and is excluded from the mean (CoDiEmb returns 0). ``eps`` only guards a constant
    prediction.

    Args:
      scores, labels: ``[..., list_size]`` predicted and gold similarities.
      where: optional ``[..., list_size]`` valid mask. weights: optional ``[..., list_size]`` item weights.
      reduce_fn: ``jnp.mean`` over lists, ``jnp.sum`` or None (``[...]``).
    """
    where = as_mask(where)
    x, y = sanitize(scores, where), sanitize(labels, where).astype(scores.dtype)
    w = jnp.ones_like(x) if weights is None else jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)
    w = sanitize(w, where)
    total = jnp.sum(w, axis=-1, keepdims=True)
    total = jnp.where(total > 0, total, 1.0)
    mean = lambda a: jnp.sum(w * a, axis=-1, keepdims=True) / total  # noqa: E731
    dx, dy = x - mean(x), y - mean(y)
    cov, var_x, var_y = mean(dx * dy), mean(dx * dx), mean(dy * dy)
    r = (cov / (jnp.sqrt(var_x + eps) * jnp.sqrt(var_y + eps)))[..., 0]
    ok = _label_variance_ok(y, where)
    return safe_reduce(1.0 - r, where=ok, reduce_fn=reduce_fn)


@register("losses.rank_kl_loss", view="list")
def rank_kl_loss(scores: Array, labels: Array, *, temperature: float = 0.05, where: Optional[Array] = None,
                 weights: Optional[Array] = None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""CoDiEmb's RankKL (arXiv 2508.11442): KL from a rank-derived target to the predicted distribution.

    Gold scores are turned into 0-based descending ranks ``r_i`` (ties get their average rank) over the ``n``
    valid items, then into targets ``u_i = (n - 1 - r_i) / (n - 1)`` (``u = 0`` if ``n = 1``):

    .. math::
        \ell = \sum_i p_i (\log p_i - \log q_i),\quad p = \operatorname{softmax}(u / T),\
        q = \operatorname{softmax}(s / T)

    CoDiEmb's code applies ``kl_div(reduction="batchmean")`` to the 1-D list, which divides this by ``n``;
    CoDiEmb's weight of 5 on RankKL applies to that scaled value.

    Args:
      scores, labels: ``[..., list_size]`` predicted and gold similarities.
      temperature: ``T`` (CoDiEmb: 0.05).
      where: optional valid mask. weights: optional ``[..., list_size]``; multiply item ``i``'s KL term.
      reduce_fn: ``jnp.mean`` over lists with a valid item, ``jnp.sum`` or None (``[...]``).
    """
    _check_positive("rank_kl_loss", "temperature", temperature)
    where = as_mask(where)
    y = sanitize(labels, where)
    valid = jnp.ones(y.shape, dtype=bool) if where is None else where
    others = pairs(valid, lambda _, v_j: v_j)
    greater = jnp.sum(others & pairs(y, jnp.less), axis=-1)  # valid j with y_j > y_i
    equal = jnp.sum(others & pairs(y, jnp.equal), axis=-1)  # valid j with y_j == y_i (includes i)
    rank = greater + (equal - 1) / 2.0
    n = jnp.sum(valid, axis=-1, keepdims=True).astype(scores.dtype)
    target = jnp.where(n > 1, (n - 1 - rank) / jnp.maximum(n - 1, 1), 0.0).astype(scores.dtype)
    log_p = log_softmax(target / temperature, where=where)
    log_q = log_softmax(sanitize(scores, where) / temperature, where=where)
    terms = apply_weights(sanitize(jnp.exp(log_p) * (log_p - log_q), where), weights, where)
    return safe_reduce(jnp.sum(terms, axis=-1), where=list_mask(where), reduce_fn=reduce_fn)


@register("losses.pro_loss", view="list")
def pro_loss(scores: Array, labels: Array, *, temperature: float = 0.05, eps: float = 1e-8,
             where: Optional[Array] = None, weights: Optional[Array] = None,
             reduce_fn: ReduceFn = jnp.mean) -> Array:
    r"""CoDiEmb's PRO loss (arXiv 2508.11442; after Taobao's PRO): each item against all clearly worse items.

    With ``z = scores / T``, ``d_ij = y_i - y_j`` and ``N_i = {j : d_ij > eps}``, ``w_i = max_{j∈N_i} d_ij``:

    .. math::
        \ell_i = -\log \frac{e^{w_i z_i}}{e^{w_i z_i} + \sum_{j \in N_i} e^{d_{ij} z_j}},\qquad
        \ell = \operatorname{mean}_{i:\,N_i \neq \emptyset}\ \ell_i

    (CoDiEmb sorts by gold score and walks the list; the set form above is the same and needs no sort.)

    Args:
      scores, labels: ``[..., list_size]`` predicted and gold similarities.
      temperature: ``T`` (CoDiEmb: 0.05). eps: minimal gold-score gap of a negative.
      where: optional valid mask. weights: optional ``[..., list_size]``; multiply ``ℓ_i``.
      reduce_fn: ``jnp.mean`` over lists with at least one such pair, ``jnp.sum`` or None (``[...]``).
    """
    _check_positive("pro_loss", "temperature", temperature)
    where = as_mask(where)
    z = sanitize(scores, where) / temperature
    y = sanitize(labels, where).astype(z.dtype)
    d = pairs(y, jnp.subtract)
    neg = restrict(d > eps, pair_mask(where))
    has_neg = jnp.any(neg, axis=-1)
    w = jnp.max(jnp.where(neg, d, 0.0), axis=-1)
    pos_logit = w * z
    neg_logits = sanitize(d * jnp.expand_dims(z, -2), neg)
    item = sanitize(jax.nn.softplus(masked_logsumexp(neg_logits, neg, axis=-1) - pos_logit), has_neg)
    item = apply_weights(item, weights, has_neg)
    count = jnp.sum(has_neg, axis=-1)
    losses = jnp.sum(item, axis=-1) / jnp.maximum(count, 1).astype(item.dtype)
    return safe_reduce(losses, where=count > 0, reduce_fn=reduce_fn)
