"""ranking_jax.losses.pairwise: the Rax pairwise losses against rax 0.4.0 (same random inputs, masks, weights,
segments, options); RankNet and LambdaLoss (every weighting scheme) against NumPy ports of allRank's rankNet and
lambdaLoss, LambdaLoss against Rax's lambdaweighted logistic loss, RankList against direct loops over its definition;
and the checks every ranking loss passes (tests/_ranking_losses.py)."""

import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest
import rax

from _loss_checks import softplus
from _ranking_losses import PAIRWISE, close, data, ranking_checks
from ranking_jax import losses as L


# ------------------------------------------------------------------------------------------------------------------
# The checks every ranking loss passes (tests/_ranking_losses.py).

(test_rax_parity, test_masked_inf_nan_never_leaks, test_structure,
 test_mismatched_shapes_name_the_function_and_argument) = ranking_checks(PAIRWISE)


# ------------------------------------------------------------------------------------------------------------------
# Beyond Rax: hand-derived NumPy oracles (allRank semantics where allRank has the loss).

def test_ranknet_matches_allrank_bce_over_pairs():
    d = data(seed=8)
    s, y, w = (np.asarray(d[k], np.float64) for k in ("scores", "labels", "where"))
    for sigma in (1.0, 2.5):
        losses, diffs = [], []
        for b in range(s.shape[0]):
            for i in range(s.shape[1]):
                for j in range(s.shape[1]):
                    if w[b, i] and w[b, j] and y[b, i] > y[b, j]:
                        losses.append(softplus(-sigma * (s[b, i] - s[b, j])))
                        diffs.append(abs(y[b, i] - y[b, j]))
        close(L.ranknet_loss(d["scores"], d["labels"], where=d["where"], sigma=sigma), np.mean(losses))
        # allRank's weight_by_diff=True: BCEWithLogitsLoss(weight=|y_i - y_j|), mean over pairs.
        close(L.ranknet_loss(d["scores"], d["labels"], where=d["where"], sigma=sigma,
                             lambdaweight_fn=L.labeldiff_lambdaweight), np.mean(np.multiply(losses, diffs)))


def allrank_lambdaloss(y_pred, y_true, scheme, k=None, sigma=1.0, mu=10.0, reduction="sum", log="binary",
                       eps=1e-10):
    """NumPy port of allRank's lambdaLoss (padding = label -1)."""
    y_pred, y_true = y_pred.astype(np.float64).copy(), y_true.astype(np.float64).copy()
    pad = y_true == -1
    y_pred[pad], y_true[pad] = -np.inf, -np.inf
    order = np.argsort(-y_pred, axis=-1, kind="stable")
    pred_sorted = np.take_along_axis(y_pred, order, -1)
    true_sorted = -np.sort(-y_true, axis=-1)
    t = np.take_along_axis(y_true, order, -1)
    with np.errstate(invalid="ignore"):
        true_diffs = t[:, :, None] - t[:, None, :]
        mask = np.isfinite(true_diffs)
        if scheme != "ndcgLoss1_scheme":
            mask &= true_diffs > 0
    n = y_pred.shape[1]
    at_k = np.zeros((n, n), bool)
    at_k[:k, :k] = True
    t, true_sorted = np.maximum(t, 0.0), np.maximum(true_sorted, 0.0)
    D = np.log2(1.0 + np.arange(1, n + 1))[None, :]
    max_dcg = np.maximum(((2 ** true_sorted - 1) / D)[:, :k].sum(-1), eps)
    G = (2 ** t - 1) / max_dcg[:, None]

    def ndcg2():
        pos = np.arange(1, n + 1)
        delta = np.abs(pos[:, None] - pos[None, :])
        deltas = np.abs(1 / D[0, delta - 1] - 1 / D[0, np.minimum(delta, n - 1)])
        np.fill_diagonal(deltas, 0.0)
        return deltas[None] * np.abs(G[:, :, None] - G[:, None, :])

    def lambdarank():
        return np.abs(1 / D[:, :, None] - 1 / D[:, None, :]) * np.abs(G[:, :, None] - G[:, None, :])

    weights = {None: lambda: 1.0, "ndcgLoss1_scheme": lambda: (G / D)[:, :, None], "ndcgLoss2_scheme": ndcg2,
               "lambdaRank_scheme": lambdarank, "ndcgLoss2PP_scheme": lambda: mu * ndcg2() + lambdarank()}[scheme]()
    with np.errstate(invalid="ignore", over="ignore"):
        diffs = np.clip(pred_sorted[:, :, None] - pred_sorted[:, None, :], -1e8, 1e8)
        probas = np.maximum(np.maximum(1 / (1 + np.exp(-sigma * diffs)), eps) ** weights, eps)
        losses = np.log2(probas) if log == "binary" else np.log(probas)
    selected = losses[mask & at_k]
    return -(selected.sum() if reduction == "sum" else selected.mean())


SCHEMES = {"rank_net": None, "ndcg_loss1": "ndcgLoss1_scheme", "ndcg_loss2": "ndcgLoss2_scheme",
           "lambda_rank": "lambdaRank_scheme", "ndcg_loss2pp": "ndcgLoss2PP_scheme"}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_lambdaloss_matches_allrank(scheme):
    rng = np.random.default_rng(9)
    scores = rng.normal(size=(3, 6)).astype(np.float32)
    labels = rng.integers(0, 4, size=(3, 6)).astype(np.float32)
    labels[0, 4:] = -1  # allRank pads at the end of the slate
    labels[2, 5:] = -1
    where = labels != -1
    for k in (None, 3):
        for reduction, reduce_fn in (("sum", jnp.sum), ("mean", jnp.mean)):
            for log, base in (("binary", 2.0), ("natural", math.e)):
                for sigma in (1.0, 0.7):
                    expected = allrank_lambdaloss(scores, labels, SCHEMES[scheme], k=k, sigma=sigma,
                                                  reduction=reduction, log=log)
                    ours = L.lambdaloss(jnp.asarray(scores), jnp.asarray(np.maximum(labels, 0)),
                                        where=jnp.asarray(where), weighting_scheme=scheme, topn=k, sigma=sigma,
                                        log_base=base, reduce_fn=reduce_fn)
                    close(ours, expected)
    with pytest.raises(ValueError, match="weighting_scheme"):
        L.lambdaloss(jnp.asarray(scores), jnp.asarray(labels), weighting_scheme="ndcgLoss2")


def test_lambdaloss_equals_rax_lambdaweighted_logistic():
    """NDCG-Loss2 (LambdaRank) == Rax's logistic loss with dcg2 (dcg) lambdaweights on NDCG gains, up to Rax's
    list-size scale and the log base."""
    d = data(seed=10)
    s, y, w = d["scores"], d["labels"], d["where"]
    n = s.shape[-1]
    for scheme, lw in (("ndcg_loss2", rax.dcg2_lambdaweight), ("lambda_rank", rax.dcg_lambdaweight)):
        theirs = rax.pairwise_logistic_loss(s, y, where=w, reduce_fn=jnp.sum,
                                            lambdaweight_fn=functools.partial(lw, normalize=True))
        ours = L.lambdaloss(s, y, where=w, weighting_scheme=scheme, log_base=math.e, reduce_fn=jnp.sum)
        close(ours, theirs / n)


def ranklist_reference(s, y, w, max_skip, tau, weights=None):
    """Direct loops over the definition in ranklist_loss's docstring."""
    total = []
    for b in range(s.shape[0]):
        valid = np.flatnonzero(w[b])
        if len(valid) == 0:
            continue
        order = valid[np.argsort(-y[b, valid], kind="stable")]
        pos = {item: p for p, item in enumerate(order)}
        loss = 0.0
        for i in valid:
            comp = [j for j in valid if y[b, j] < y[b, i] and 0 < pos[j] - pos[i] <= (max_skip or len(valid))]
            if comp:
                lse = tau * np.log(np.sum(np.exp(s[b, comp] / tau)))
                loss += (1.0 if weights is None else weights[b, i]) * softplus(lse - s[b, i])
        total.append(loss)
    return np.mean(total)


def test_ranklist_matches_definition_and_special_cases():
    d = data(seed=11)
    s, y, wt = (np.asarray(d[k], np.float64) for k in ("scores", "labels", "weights"))
    w = np.asarray(d["where"])
    for max_skip in (None, 1, 2, 4):
        for tau in (1.0, 0.3):
            close(L.ranklist_loss(d["scores"], d["labels"], where=d["where"], max_skip=max_skip, temperature=tau),
                  ranklist_reference(s, y, w, max_skip, tau))
    close(L.ranklist_loss(d["scores"], d["labels"], where=d["where"], max_skip=2, weights=d["weights"]),
          ranklist_reference(s, y, w, 2, 1.0, weights=wt))
    # Distinct labels, whole list, tau = 1: exactly ListMLE (Rax).
    distinct = jnp.asarray(np.argsort(np.random.default_rng(0).random((4, 7)), -1), jnp.float32)
    close(L.ranklist_loss(d["scores"], distinct, where=d["where"]),
          rax.listmle_loss(d["scores"], distinct, where=d["where"]))
    # max_skip=1 with distinct labels: RankNet on label-adjacent pairs.
    ranks_by_label = np.argsort(np.argsort(-np.asarray(distinct), -1), -1)
    adjacent = ranks_by_label[:, None, :] - ranks_by_label[:, :, None] == 1  # [b, i, j]: j right below i
    per_list = (adjacent * softplus(-(s[:, :, None] - s[:, None, :]))).sum((1, 2))
    close(L.ranklist_loss(d["scores"], distinct, max_skip=1), per_list.mean())
    with pytest.raises(ValueError, match="max_skip"):
        L.ranklist_loss(d["scores"], d["labels"], max_skip=0)
