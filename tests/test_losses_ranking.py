"""Ranking losses (pointwise, pairwise, listwise), lambdaweights and t12n.

Oracles: rax 0.4.0 for every function Rax has (same random inputs, masks, weights, segments, options); NumPy ports of
allRank's lambdaLoss / rankNet / listNet / approxNDCGLoss / neuralNDCG and direct NumPy loops of the definitions for the
losses Rax lacks. Plus invariants: masked inf/NaN never leaks into values or gradients, all-masked lists are left out,
jit == eager, vmap == batch, where == truncation, segments == padded lists, permutation and shift invariance.
"""

import functools
import inspect
import math
import types

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax
from hypothesis import given, settings, strategies as st
from rax._src import t12n as rax_t12n

from _loss_checks import softplus
from ranking_jax import losses as L
from ranking_jax import ops as U
from ranking_jax.losses import listwise, pairwise, pointwise

RTOL, ATOL = 1e-5, 1e-6
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # test-only: less LLVM optimization, faster compiles

RAX_LOSSES = ["pointwise_mse_loss", "pointwise_sigmoid_loss", "pairwise_hinge_loss", "pairwise_logistic_loss",
              "pairwise_mse_loss", "pairwise_qr_loss", "pairwise_soft_zero_one_loss", "softmax_loss",
              "poly1_softmax_loss", "unique_softmax_loss", "listmle_loss"]
NO_WEIGHTS = {"listmle_loss", "listnet_loss", "position_aware_listmle_loss", "neural_ndcg_loss",
              "neural_ndcg_transposed_loss"}
NO_SEGMENTS = {"neural_ndcg_loss", "neural_ndcg_transposed_loss"}
NOT_SHIFT_INVARIANT = {"pointwise_mse_loss", "pointwise_sigmoid_loss"}
OURS = [name for module in (pointwise, pairwise, listwise) for name in module.__all__ if name != "pairwise_loss"]


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def data(seed=0, batch=4, n=7, label_levels=4):
    """Scores without ties, graded labels, a mask with one all-masked and one full list, weights, segments."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(batch, n)).astype(np.float32)
    labels = rng.integers(0, label_levels, size=(batch, n)).astype(np.float32)
    where = rng.random((batch, n)) > 0.3
    where[1] = False
    where[2] = True
    weights = rng.uniform(0.2, 2.0, size=(batch, n)).astype(np.float32)
    segments = rng.integers(0, 3, size=(batch, n))
    return dict(scores=jnp.asarray(scores), labels=jnp.asarray(labels), where=jnp.asarray(where),
                weights=jnp.asarray(weights), segments=jnp.asarray(segments))


def labels_for(name, labels):
    return labels / 3.0 if name == "pointwise_sigmoid_loss" else labels


# ------------------------------------------------------------------------------------------------------------------
# Rax parity.

OPTION_SETS = [(), ("where",), ("segments",), ("where", "weights", "segments")]
RAX_CASES = [(name, tuple(o for o in options if not (name in NO_WEIGHTS and o == "weights")))
             for name in RAX_LOSSES for options in OPTION_SETS]


@pytest.mark.parametrize("name,options", RAX_CASES, ids=lambda x: x if isinstance(x, str) else "+".join(x) or "plain")
def test_rax_parity(name, options):
    d = data(seed=1)
    if name == "poly1_softmax_loss" and {"where", "segments"} <= set(options):
        # Rax 0.4.0 raises a broadcasting ValueError here; checked below against padded lists instead.
        with pytest.raises(ValueError):
            rax.poly1_softmax_loss(d["scores"], d["labels"], **{k: d[k] for k in options})
        return
    kwargs = {k: d[k] for k in options}
    labels = labels_for(name, d["labels"])
    for reduce_fn in (jnp.mean, jnp.sum, None):
        ours = getattr(L, name)(d["scores"], labels, reduce_fn=reduce_fn, **kwargs)
        theirs = getattr(rax, name)(d["scores"], labels, reduce_fn=reduce_fn, **kwargs)
        assert ours.shape == theirs.shape
        close(ours, theirs)
    grad_ours = jax.grad(getattr(L, name))(d["scores"], labels, **kwargs)
    grad_theirs = jax.grad(getattr(rax, name))(d["scores"], labels, **kwargs)
    assert np.isfinite(grad_ours).all()
    rax_finite = np.isfinite(grad_theirs).all(-1)
    if (name, options) == ("listmle_loss", ("where", "segments")):
        # Rax 0.4.0's segmented logcumsumexp gives NaN gradients on every list holding a masked item; ours is also
        # checked against padded lists in test_structure.
        assert list(rax_finite) == list(np.asarray(d["where"]).all(-1))
    close(np.asarray(grad_ours)[rax_finite], np.asarray(grad_theirs)[rax_finite])


def test_rax_parity_options():
    d = data(seed=2)
    s, y, w = d["scores"], d["labels"], d["where"]
    for tau in (0.2, 0.5, 1.0):
        for squared in (False, True):
            close(L.pairwise_qr_loss(s, y, where=w, tau=tau, squared=squared),
                  rax.pairwise_qr_loss(s, y, where=w, tau=tau, squared=squared))
    with pytest.raises(ValueError, match="tau"):
        L.pairwise_qr_loss(s, y, tau=0.0)
    for eps in (0.0, 0.5, 3.0):
        close(L.poly1_softmax_loss(s, y, where=w, epsilon=eps), rax.poly1_softmax_loss(s, y, where=w, epsilon=eps))
    for gain_fn in (None, lambda x: x):
        close(L.unique_softmax_loss(s, y, where=w, gain_fn=gain_fn), rax.unique_softmax_loss(s, y, where=w,
                                                                                              gain_fn=gain_fn))
    # label_fn: ours with our normalize_probabilities == Rax with its own, and Rax's label_fn works with ours too.
    close(L.softmax_loss(s, y, where=w, weights=d["weights"], label_fn=U.normalize_probabilities),
          rax.softmax_loss(s, y, where=w, weights=d["weights"], label_fn=rax.utils.normalize_probabilities))
    close(L.softmax_loss(s, y, where=w, segments=d["segments"], label_fn=rax.utils.normalize_probabilities),
          rax.softmax_loss(s, y, where=w, segments=d["segments"], label_fn=rax.utils.normalize_probabilities))
    # listmle with tied labels and random tie-breaking by key.
    key = jax.random.PRNGKey(3)
    for kw in ({}, {"where": w}, {"segments": d["segments"]}):
        close(L.listmle_loss(s, y, key=key, **kw), rax.listmle_loss(s, y, key=key, **kw))


def test_rax_parity_extreme_scores():
    d = data(seed=3)
    s = d["scores"].at[0, :4].set(jnp.asarray([2.1e26, -3.4e37, 0.5, 1e3]))
    y = d["labels"]
    for name in RAX_LOSSES:
        ours = getattr(L, name)(s, labels_for(name, y))
        theirs = getattr(rax, name)(s, labels_for(name, y))
        if np.isfinite(theirs):
            close(ours, theirs)
        else:  # squares of 1e37 overflow float32 in both
            assert name in ("pairwise_mse_loss", "pointwise_mse_loss") and not np.isfinite(ours)


def test_all_zero_labels_and_empty_lists():
    s = data(seed=3)["scores"]
    y = jnp.zeros_like(s)
    for name in RAX_LOSSES:
        close(getattr(L, name)(s, y), getattr(rax, name)(s, y))
    for name in OURS:
        assert np.isfinite(_call(name, s, y)) and np.isfinite(jax.grad(lambda x: _call(name, x, y))(s)).all()
    # Lists of size 0 give 0 (as Rax); all losses in one compiled function.
    empty = jax.jit(lambda s, y: [_call(name, s, y) for name in OURS], compiler_options=FAST_COMPILE)(
        jnp.zeros((2, 0)), jnp.zeros((2, 0)))
    assert [float(v) for v in empty] == [0.0] * len(OURS)


@pytest.mark.parametrize("name", ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"])
def test_lambdaweight_parity(name):
    d = data(seed=4)
    s, y = d["scores"], d["labels"]
    cases = [{}, {"where": d["where"]}, {"segments": d["segments"]}, {"weights": d["weights"]},
             {"where": d["where"], "segments": d["segments"], "weights": d["weights"]}]
    if name != "labeldiff_lambdaweight":
        cases += [{"topn": 3}, {"normalize": True}, {"normalize": True, "topn": 2, "where": d["where"]},
                  {"normalize": True, "weights": d["weights"]}, {"topn": 2, "segments": d["segments"]},
                  {"gain_fn": lambda x: x, "discount_fn": lambda r: 1.0 / r}]
    if name == "dcg2_lambdaweight":
        cases += [{"light_discount": True}, {"light_discount": True, "topn": 3, "where": d["where"]}]
    for kw in cases:
        ours, theirs = getattr(L, name)(s, y, **kw), getattr(rax, name)(s, y, **kw)
        assert ours.shape == theirs.shape == (4, 49)
        valid = np.ones(ours.shape, bool)
        if "where" in kw:  # Rax's labeldiff weights pairs of two masked items; ours gives them 0
            valid = np.asarray(U.compute_pairs(kw["where"], np.logical_and))
            assert np.all(np.asarray(ours)[~valid] == 0)
        close(np.where(valid, ours, 0), np.where(valid, theirs, 0))
        # Used as lambdaweight_fn of every pairwise loss.
        loss_kw = {k: v for k, v in kw.items() if k in ("where", "segments", "weights")}
        lw_kw = {k: v for k, v in kw.items() if k not in loss_kw}
        for loss in ("pairwise_logistic_loss", "pairwise_hinge_loss", "pairwise_mse_loss"):
            close(getattr(L, loss)(s, y, lambdaweight_fn=functools.partial(getattr(L, name), **lw_kw), **loss_kw),
                  getattr(rax, loss)(s, y, lambdaweight_fn=functools.partial(getattr(rax, name), **lw_kw),
                                     **loss_kw))


def test_lambdaweight_normalize_with_segments_normalizes_every_item():
    """Rax 0.4 normalizes only the first item of each segment (its ideal DCG is 0 elsewhere); ours equals the same
    items laid out as separate padded lists."""
    s = jnp.asarray([[0.5, 2.0, -1.0, 0.3, 1.2]])
    y = jnp.asarray([[1.0, 2.0, 0.0, 3.0, 1.0]])
    seg = jnp.asarray([[0, 0, 0, 1, 1]])
    lw = L.dcg_lambdaweight(s, y, segments=seg, normalize=True).reshape(5, 5)
    padded_s = jnp.asarray([[0.5, 2.0, -1.0], [0.3, 1.2, 0.0]])
    padded_y = jnp.asarray([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    padded_w = jnp.asarray([[True, True, True], [True, True, False]])
    lw_padded = L.dcg_lambdaweight(padded_s, padded_y, where=padded_w, normalize=True).reshape(2, 3, 3)
    # Lambdaweights scale by the static list size (5 vs 3).
    close(lw[:3, :3] / 5, lw_padded[0] / 3)
    close(lw[3:, 3:] / 5, lw_padded[1, :2, :2] / 3)


# ------------------------------------------------------------------------------------------------------------------
# NaN safety, masking, transformations.

def _call(name, scores, labels, **kw):
    fn = getattr(L, name)
    if name in NO_WEIGHTS:
        kw.pop("weights", None)
    if name in NO_SEGMENTS:
        kw.pop("segments", None)
    return fn(scores, labels_for(name, labels), **kw)


@pytest.mark.parametrize("name", OURS)
def test_masked_inf_nan_never_leaks(name):
    d = data(seed=5)
    where = d["where"]
    poison = jnp.asarray(np.resize([-np.inf, np.inf, np.nan], where.shape), jnp.float32)
    bad_scores = jnp.where(where, d["scores"], poison)
    bad_labels = jnp.where(where, d["labels"], jnp.nan)
    bad_weights = jnp.where(where, d["weights"], jnp.nan)
    clean = _call(name, d["scores"], d["labels"], where=where, weights=d["weights"])
    for reduce_fn in (jnp.mean, None):
        value = _call(name, bad_scores, bad_labels, where=where, weights=bad_weights, reduce_fn=reduce_fn)
        close(value, _call(name, d["scores"], d["labels"], where=where, weights=d["weights"], reduce_fn=reduce_fn))
    assert np.isfinite(clean)
    grad = jax.grad(lambda s: _call(name, s, bad_labels, where=where, weights=bad_weights))(bad_scores)
    grad_clean = jax.grad(lambda s: _call(name, s, d["labels"], where=where, weights=d["weights"]))(d["scores"])
    assert np.isfinite(grad).all()
    assert np.all(np.asarray(grad)[~np.asarray(where)] == 0.0)
    close(grad, grad_clean)
    if name not in NO_SEGMENTS:
        grad = jax.grad(lambda s: _call(name, s, bad_labels, where=where, segments=d["segments"]))(bad_scores)
        assert np.isfinite(grad).all() and np.all(np.asarray(grad)[~np.asarray(where)] == 0.0)


SEGMENTS = np.asarray([0, 0, 1, 1, 1, 2, 2])
PADDED = [np.flatnonzero(SEGMENTS == k) for k in range(3)]


def _structure(name, row_valid, s, y, w):
    """Everything the invariants need, computed in one compiled function per loss."""
    fn = functools.partial(_call, name)
    keep = np.array([0, 2, 3])  # list 1 is all masked
    out = {
        "value": fn(s, y, where=w),
        "grad": jax.grad(lambda x: fn(x, y, where=w))(s),
        "dropped": fn(s[keep], y[keep], where=w[keep]),
        "none_masked": jax.value_and_grad(lambda x: fn(x, y, where=jnp.zeros_like(w)))(s),
        "unreduced": fn(s, y, where=w, reduce_fn=None),
        "vmapped": jax.vmap(lambda a, b, c: fn(a, b, where=c, reduce_fn=None))(s, y, w),
        "sum": fn(s, y, where=w, reduce_fn=jnp.sum),
        "leading_dims": fn(s[:, None, None, :], y[:, None, None, :], where=w[:, None, None, :]),
        "row": fn(s[0], y[0], where=w[0]),
    }
    out["truncated"] = fn(s[0, row_valid], y[0, row_valid])
    if name not in NO_SEGMENTS:
        ps = jnp.stack([jnp.pad(s[3, i], (0, 3 - len(i))) for i in PADDED])
        py = jnp.stack([jnp.pad(y[3, i], (0, 3 - len(i))) for i in PADDED])
        pw = jnp.stack([jnp.arange(3) < len(i) for i in PADDED])
        for reduce_fn in (jnp.sum, jnp.mean):
            out[f"segments_{reduce_fn.__name__}"] = fn(s[3], y[3], segments=jnp.asarray(SEGMENTS),
                                                      reduce_fn=reduce_fn)
            out[f"padded_{reduce_fn.__name__}"] = fn(ps, py, where=pw, reduce_fn=reduce_fn)
    return out


@pytest.mark.parametrize("name", OURS)
def test_structure(name):
    """jit == eager; all-masked lists left out with zero gradients; vmap == batch; sum(unreduced) == sum;
    leading dims; where == truncation; segments == padded lists."""
    d = data(seed=7)
    s, y, w = d["scores"], d["labels"], d["where"]
    out = jax.jit(functools.partial(_structure, name, np.flatnonzero(np.asarray(w[0]))),
                  compiler_options=FAST_COMPILE)(s, y, w)
    close(out["value"], _call(name, s, y, where=w))
    close(out["grad"], jax.grad(lambda x: _call(name, x, y, where=w))(s))
    close(out["value"], out["dropped"])
    assert np.all(np.asarray(out["grad"])[1] == 0.0)
    value, grad = out["none_masked"]
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)
    close(out["vmapped"], out["unreduced"])
    close(jnp.sum(out["unreduced"]), out["sum"], atol=1e-5)
    close(out["leading_dims"], out["value"])
    close(out["row"], out["truncated"])
    if name not in NO_SEGMENTS:
        for reduce_fn in ("sum", "mean"):
            close(out[f"segments_{reduce_fn}"], out[f"padded_{reduce_fn}"], atol=1e-5)


def test_poly1_segments_with_where_equals_padded_lists():
    s = jnp.asarray([0.5, 2.0, -1.0, 0.3, 1.2, 7.0])
    y = jnp.asarray([1.0, 2.0, 0.0, 3.0, 1.0, 1.0])
    seg = jnp.asarray([0, 0, 0, 1, 1, 1])
    w = jnp.asarray([True, True, True, True, True, False])
    padded = L.poly1_softmax_loss(jnp.asarray([[0.5, 2.0, -1.0], [0.3, 1.2, 0.0]]),
                                  jnp.asarray([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]]),
                                  where=jnp.asarray([[True, True, True], [True, True, False]]))
    close(L.poly1_softmax_loss(s, y, segments=seg, where=w), padded)


# ------------------------------------------------------------------------------------------------------------------
# Property tests (hypothesis): permutation invariance and shift invariance.

@st.composite
def lists(draw, batch=4, n=7):
    # Quarter-integers: exact in float32, so shifting cannot create ties.
    scores = draw(hnp.arrays(np.int32, (batch, n), elements=st.integers(-20, 20), unique=True))
    scores = jnp.asarray(scores.astype(np.float32) / 4)
    labels = jnp.asarray(np.stack([draw(st.permutations(range(n))) for _ in range(batch)]), jnp.float32)
    where = jnp.asarray(draw(hnp.arrays(np.bool_, (batch, n))))
    perm = np.asarray(draw(st.permutations(range(n))))
    shift = draw(st.integers(-12, 12)) / 4
    return scores, labels, where, perm, shift


@settings(max_examples=10, deadline=None)
@given(lists())
def test_permutation_and_shift_invariance(example):
    scores, labels, where, perm, shift = example
    for name in OURS:
        def fn(s, y, w):
            return _call(name, s, y, where=w)

        base = fn(scores, labels, where)
        close(fn(scores[:, perm], labels[:, perm], where[:, perm]), base, rtol=1e-4, atol=1e-5)
        if name not in NOT_SHIFT_INVARIANT:
            close(fn(scores + shift, labels, where), base, rtol=1e-4, atol=1e-4)


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


def test_listnet_matches_allrank():
    d = data(seed=12)
    s, y, w = np.asarray(d["scores"], np.float64), np.asarray(d["labels"], np.float64), np.asarray(d["where"])
    values = []
    for b in (0, 2, 3):  # allRank: pads are label -1; list 1 (all padded) is left out here
        sv, yv = s[b, w[b]], y[b, w[b]]
        p_true = np.exp(yv) / np.exp(yv).sum()
        p_pred = np.exp(sv) / np.exp(sv).sum()
        values.append(-np.sum(p_true * np.log(p_pred + 1e-10)))
    close(L.listnet_loss(d["scores"], d["labels"], where=d["where"]), np.mean(values))


def test_position_aware_listmle_matches_definition():
    rng = np.random.default_rng(13)
    s = rng.normal(size=(3, 6)).astype(np.float32)
    y = np.stack([rng.permutation(6) for _ in range(3)]).astype(np.float32)
    w = rng.random((3, 6)) > 0.25
    w[0] = True

    def reference(alpha_fn):
        out = []
        for b in range(3):
            sv, yv = s[b, w[b]].astype(np.float64), y[b, w[b]]
            order = sv[np.argsort(-yv, kind="stable")]
            n = len(order)
            for_list = 0.0
            for i in range(n):
                for_list -= alpha_fn(i + 1, n) * (order[i] - np.log(np.sum(np.exp(order[i:]))))
            out.append(for_list)
        return np.mean(out)

    def default(i, n):
        return (2.0 ** (n - i) - 1) / sum(2.0 ** (n - k) - 1 for k in range(1, n + 1))

    close(L.position_aware_listmle_loss(jnp.asarray(s), jnp.asarray(y), where=jnp.asarray(w)), reference(default))
    close(L.position_aware_listmle_loss(jnp.asarray(s), jnp.asarray(y), where=jnp.asarray(w),
                                        position_weight_fn=lambda i, n: 2.0 ** (n - i) - 1),
          reference(lambda i, n: 2.0 ** (n - i) - 1))
    # Constant weights 1: plain ListMLE (Rax).
    close(L.position_aware_listmle_loss(jnp.asarray(s), jnp.asarray(y), where=jnp.asarray(w),
                                        position_weight_fn=lambda i, n: jnp.ones_like(i, jnp.float32)),
          rax.listmle_loss(jnp.asarray(s), jnp.asarray(y), where=jnp.asarray(w)))
    # The default weights do not overflow for long lists (2^200 > float32 max) and still sum to 1.
    alpha = listwise._default_position_weights(jnp.arange(1, 201), jnp.full((200,), 200))
    assert np.isfinite(alpha).all() and np.all(np.diff(np.asarray(alpha)) <= 0)
    close(jnp.sum(alpha), 1.0)
    close(alpha[:3], [0.5, 0.25, 0.125])


def test_approx_ndcg_matches_allrank_and_rax():
    d = data(seed=14)
    s, y, w = np.asarray(d["scores"], np.float64), np.asarray(d["labels"], np.float64), np.asarray(d["where"])
    for alpha in (1.0, 4.0):
        values = []
        for b in (0, 2, 3):
            sv, yv = s[b, w[b]], y[b, w[b]]
            approx_pos = 1 + np.array([sum(1 / (1 + np.exp(-alpha * (sv[j] - sv[i])))
                                           for j in range(len(sv)) if j != i) for i in range(len(sv))])
            ideal = np.sum((2 ** np.sort(yv)[::-1] - 1) / np.log2(2 + np.arange(len(yv))))
            values.append(-np.sum((2 ** yv - 1) / ideal / np.log2(1 + approx_pos)))
        close(L.approx_ndcg_loss(d["scores"], d["labels"], where=d["where"], temperature=1 / alpha), np.mean(values))
    with _rax_t12n_shim():
        for kw in ({"topn": 3}, {"where": d["where"]}, {"weights": d["weights"], "topn": 2},
                   {"segments": d["segments"]}, {"gain_fn": lambda x: x, "discount_fn": lambda r: 1 / r}):
            for temperature in (1.0, 0.5):
                theirs = rax.approx_t12n(rax.ndcg_metric, temperature=temperature)(d["scores"], d["labels"], **kw)
                close(L.approx_ndcg_loss(d["scores"], d["labels"], temperature=temperature, **kw), theirs)


def allrank_neural_ndcg(y_pred, y_true, temperature=1.0, k=None, powered=True, transposed=False, max_iter=50,
                        tol=1e-6):
    """NumPy port of allRank's deterministic neuralNDCG / neuralNDCG_transposed (padding = label -1 at the end); the
    transposed IDCG uses the same gains as the DCG (allRank uses 2^y - 1 there even with powered_relevancies=False)."""
    y_pred, y_true = y_pred.astype(np.float64), y_true.astype(np.float64)
    batch, n = y_pred.shape
    k = n if k is None else k
    mask = y_true == -1
    s = np.where(mask, -1e8, y_pred)[:, :, None]
    A = np.abs(s - s.transpose(0, 2, 1))
    A = np.where(mask[:, :, None] | mask[:, None, :], 0.0, A)
    B = A @ np.ones((n, n))
    scaling = np.zeros((batch, n))
    for b, m in enumerate(mask.sum(1)):
        scaling[b, :n - m] = n - m + 1 - 2 * (np.arange(n - m) + 1)
    C = np.where(mask[:, :, None], 0.0, s) @ scaling[:, None, :]
    P_max = (C - B).transpose(0, 2, 1)
    P_max = np.where(mask[:, :, None] | mask[:, None, :], -np.inf, P_max)
    P_max = np.where(mask[:, :, None] & mask[:, None, :], 1.0, P_max)
    z = P_max / temperature
    z = np.exp(z - z.max(-1, keepdims=True))
    P = z / z.sum(-1, keepdims=True)
    P = np.where(mask[:, None, :] | mask[:, :, None], 0.0, P)
    P = np.where(mask[:, None, :] & mask[:, :, None], 1.0, P)
    for _ in range(max_iter):
        P = P / np.maximum(P.sum(1, keepdims=True), 1e-10)
        P = P / np.maximum(P.sum(2, keepdims=True), 1e-10)
        if np.max(np.abs(P.sum(2) - 1)) < tol and np.max(np.abs(P.sum(1) - 1)) < tol:
            break
    P = np.where(mask[:, None, :] | mask[:, :, None], 0.0, P)
    gains = np.where(mask, 0.0, y_true)
    gains = 2 ** gains - 1 if powered else gains
    discounts = 1 / np.log2(np.arange(n) + 2.0)
    ideal = -np.sort(-gains, -1)
    idcg = np.sum((ideal * discounts)[:, :k], -1)
    if transposed:
        expected = np.einsum("bij,i->bj", P, np.where(np.arange(n) < k, discounts, 0.0))
        dcg = np.sum(gains * expected, -1)
    else:
        dcg = np.sum(((P @ gains[:, :, None])[..., 0] * discounts)[:, :k], -1)
    ndcg = np.where(idcg == 0, 0.0, dcg / (idcg + 1e-10))
    return -ndcg.sum() / (idcg != 0).sum()


@pytest.mark.parametrize("transposed", [False, True])
def test_neural_ndcg_matches_allrank(transposed):
    rng = np.random.default_rng(15)
    scores = rng.normal(size=(4, 6)).astype(np.float32)
    labels = rng.integers(0, 4, size=(4, 6)).astype(np.float32)
    labels[1, 3:] = -1
    labels[3, 5:] = -1
    labels[2, :] = np.where(labels[2] > 0, 0, labels[2])  # a list without relevant items: left out
    where = labels != -1
    fn = L.neural_ndcg_transposed_loss if transposed else L.neural_ndcg_loss
    for temperature in (1.0, 0.3):
        for k in (None, 3):
            for powered, gain_fn in ((True, U.default_gain_fn), (False, lambda x: x)):
                expected = allrank_neural_ndcg(scores, labels, temperature=temperature, k=k, powered=powered,
                                               transposed=transposed)
                ours = fn(jnp.asarray(scores), jnp.asarray(np.maximum(labels, 0)), where=jnp.asarray(where),
                          temperature=temperature, topn=k, gain_fn=gain_fn)
                close(ours, expected, rtol=1e-5, atol=2e-6)


def test_neural_ndcg_limits():
    d = data(seed=16)
    s, y, w = d["scores"], d["labels"], d["where"]
    # Small temperature: the exact NDCG (Rax), restricted to lists with a relevant item.
    exact = rax.ndcg_metric(s, y, where=w, reduce_fn=None)
    has_rel = np.asarray(jnp.any((y > 0) & w, -1))
    close(L.neural_ndcg_loss(s, y, where=w, temperature=1e-4), -np.mean(np.asarray(exact)[has_rel]), rtol=1e-4)
    # For the same relaxed permutation both forms are d^T P g, with or without Sinkhorn scaling.
    for iterations in (0, 50):
        close(L.neural_ndcg_loss(s, y, where=w, sinkhorn_iterations=iterations),
              L.neural_ndcg_transposed_loss(s, y, where=w, sinkhorn_iterations=iterations))
    # Sinkhorn makes the relaxed permutation doubly stochastic; NeuralSort alone is only row-stochastic.
    p_hat = listwise._neural_sort(s[2], w[2], 1.0)
    close(p_hat.sum(-1), np.ones(7))
    assert not np.allclose(p_hat.sum(-2), 1.0, atol=1e-2)
    p = listwise._sinkhorn(p_hat, iterations=50, tol=1e-6)
    close(p.sum(-1), np.ones(7), atol=1e-5)
    close(p.sum(-2), np.ones(7), atol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# t12n: against Rax 0.4.0's own t12n, run with a test-side shim for the jax.util.wraps that JAX 0.7 removed.

def _old_jax_util_wraps(wrapped, namestr=None, docstr=None, **kwargs):
    """The oracle-side shim: jax.util.wraps as JAX <= 0.6 defined it."""

    def wrapper(fun):
        name = getattr(wrapped, "__name__", None) or getattr(getattr(wrapped, "func", None), "__name__", "fn")
        doc = getattr(wrapped, "__doc__", "") or ""
        fun.__dict__.update(getattr(wrapped, "__dict__", {}))
        fun.__name__ = name if namestr is None else namestr.format(fun=name)
        fun.__doc__ = doc if docstr is None else docstr.format(fun=name, doc=doc, **kwargs)
        fun.__wrapped__ = wrapped
        return fun

    return wrapper


class _rax_t12n_shim:
    def __enter__(self):
        self.had = hasattr(jax, "util")
        self.saved = getattr(jax, "util", None)
        jax.util = types.SimpleNamespace(wraps=_old_jax_util_wraps)
        return self

    def __exit__(self, *exc):
        if self.had:
            jax.util = self.saved
        else:
            del jax.util


def test_rax_t12n_is_broken_without_the_shim():
    assert not hasattr(getattr(jax, "util", None), "wraps")
    with pytest.raises(AttributeError):
        rax_t12n.approx_t12n(rax.ndcg_metric)
    assert L.approx_t12n(rax.ndcg_metric).__name__ == "approx_ndcg_metric"


def test_approx_and_bound_t12n_match_rax():
    d = data(seed=17)
    s, y = d["scores"], d["labels"]
    with _rax_t12n_shim():
        for metric, kw in ((rax.ndcg_metric, {}), (rax.ndcg_metric, {"topn": 3}), (rax.mrr_metric, {"topn": 2}),
                           (rax.dcg_metric, {"where": d["where"]}), (rax.ap_metric, {}),
                           (rax.recall_metric, {"topn": 3, "segments": d["segments"]}),
                           (rax.precision_metric, {"topn": 4})):
            for temperature in (1.0, 0.25):
                ours = L.approx_t12n(metric, temperature=temperature)
                theirs = rax_t12n.approx_t12n(metric, temperature=temperature)
                close(ours(s, y, **kw), theirs(s, y, **kw))
                close(jax.grad(ours)(s, y, **kw), jax.grad(theirs)(s, y, **kw))
            close(L.bound_t12n(metric)(s, y, **kw), rax_t12n.bound_t12n(metric)(s, y, **kw))
            close(jax.grad(L.bound_t12n(metric))(s, y, **kw), jax.grad(rax_t12n.bound_t12n(metric))(s, y, **kw))
        # User kwargs override the injected rank_fn.
        close(L.approx_t12n(rax.ndcg_metric)(s, y, rank_fn=rax.utils.ranks), -rax.ndcg_metric(s, y))
    # ... and our own metrics (ranking_jax.metrics) take the same injection.
    from ranking_jax import metrics as M
    close(L.approx_t12n(M.ndcg_metric)(s, y, where=d["where"]), L.approx_ndcg_loss(s, y, where=d["where"]))
    assert L.bound_t12n(M.mrr_metric).__name__ == "bounded_mrr_metric"


def test_gumbel_and_segment_t12n_match_rax():
    # One list, 4 samples: the sampled batch has the [4, 7] shape every other test uses (compiled ops are reused).
    d = data(seed=18)
    s, y, w, seg = d["scores"][0], d["labels"][0], d["where"][0], d["segments"][0]
    key = jax.random.PRNGKey(5)
    with _rax_t12n_shim():
        for fn, kw, options in ((rax.softmax_loss, {"where": w}, {"smoothing_factor": 1e-20}),
                                (rax.ndcg_metric, {"topn": 3}, {"beta": 0.5}),
                                (rax.listmle_loss, {"where": w}, {})):  # listmle takes a key: it gets a split
            ours = L.gumbel_t12n(fn, samples=4, **options)
            theirs = rax_t12n.gumbel_t12n(fn, samples=4, **options)
            close(ours(s, y, key=key, **kw), theirs(s, y, key=key, **kw))
        close(L.gumbel_t12n(L.approx_t12n(rax.mrr_metric), samples=4)(s, y, key=key),
              rax_t12n.gumbel_t12n(rax_t12n.approx_t12n(rax.mrr_metric), samples=4)(s, y, key=key))

        def no_segments(scores, labels, *, where=None, reduce_fn=jnp.mean):
            return rax.softmax_loss(scores, labels, where=where, reduce_fn=reduce_fn)

        for kw in ({"segments": seg}, {"segments": seg, "where": w}, {}):
            close(L.segment_t12n(no_segments)(s, y, **kw), rax_t12n.segment_t12n(no_segments)(s, y, **kw))
    assert L.segment_t12n(L.softmax_loss) is L.softmax_loss
    assert "key" in inspect.signature(L.gumbel_t12n(L.softmax_loss)).parameters
    assert "segments" in inspect.signature(L.segment_t12n(no_segments)).parameters
    # Gumbel samples are reproducible from the key, differ across keys, and masked inf/NaN stay harmless.
    g = L.gumbel_t12n(L.softmax_loss, samples=4)
    close(g(s, y, key=key), g(s, y, key=key))
    assert not np.isclose(g(s, y, key=key), g(s, y, key=jax.random.PRNGKey(6)))
    bad = jnp.where(w, s, jnp.nan)
    for smoothing in (None, 1e-20):
        gs = L.gumbel_t12n(L.softmax_loss, samples=4, smoothing_factor=smoothing)
        value, grad = jax.value_and_grad(lambda x: gs(x, y, where=w, key=key))(bad)
        assert np.isfinite(grad).all() and np.all(np.asarray(grad)[~np.asarray(w)] == 0)
        close(value, gs(s, y, where=w, key=key))


def test_t12n_nan_safe_with_masked_inf():
    d = data(seed=19)
    s, y, w = d["scores"], d["labels"], d["where"]
    bad = jnp.where(w, s, -jnp.inf)
    for transform in (L.approx_t12n, L.bound_t12n):
        loss = transform(rax.ndcg_metric)
        grad = jax.grad(lambda x: loss(x, y, where=w, topn=3))(bad)
        assert np.isfinite(grad).all() and np.all(np.asarray(grad)[~np.asarray(w)] == 0)


@pytest.mark.parametrize("name", OURS + ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"])
def test_mismatched_shapes_name_the_function_and_argument(name):
    s = jnp.zeros((4, 7))
    with pytest.raises(ValueError, match=f"{name}: labels has shape \\(4, 6\\) but scores has shape \\(4, 7\\)"):
        getattr(L, name)(s, jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match=f"{name}: where has shape \\(7,\\)"):
        getattr(L, name)(s, s, where=jnp.ones(7, bool))
