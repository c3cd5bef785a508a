"""ranking_jax.metrics against independent oracles: rax 0.4.0 (Rax-parity metrics), scipy (Kendall tau),
NumPy loops and hand-derived numbers (Recall@k, OPIS, ranking accuracy)."""

import functools
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import ranking_jax.losses as losses
import ranking_jax.metrics as metrics
from ranking_jax.ops import approx_cutoff, approx_ranks
from ranking_jax.metrics import metric_learning

def jit(fn, **static):
    """``fn`` jitted with ``static`` keyword arguments bound (one compilation instead of many eager ops)."""
    return jax.jit(functools.partial(fn, **static))


RAX_METRICS = ["dcg_metric", "ndcg_metric", "mrr_metric", "ap_metric", "precision_metric", "recall_metric"]
BINARY = ["mrr_metric", "ap_metric", "precision_metric", "recall_metric"]


def _batch(seed, batch=6, size=9):
    """Scores with many ties and some -inf, graded labels, a mask with one all-masked list, weights, segments."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, (batch, size)).astype(np.float32)
    scores[rng.random((batch, size)) < 0.1] = -np.inf
    labels = rng.integers(0, 4, (batch, size)).astype(np.float32)
    where = rng.random((batch, size)) > 0.25
    where[2] = False
    weights = rng.random((batch, size)).astype(np.float32) + 0.5
    segments = np.sort(rng.integers(0, 3, (batch, size)), axis=-1)
    return {k: jnp.asarray(v) for k, v in dict(scores=scores, labels=labels, where=where, weights=weights,
                                                segments=segments).items()}


CONFIGS = [
    {},
    {"where": True},
    {"where": True, "topn": 3},
    {"topn": 1},
    {"topn": 20},
    {"where": True, "topn": 0},
    {"where": True, "segments": True},
    {"where": True, "segments": True, "topn": 2},
    {"where": True, "key": 1, "topn": 4},
    {"key": 7},
]


def _kwargs(name, config, data):
    kw = {}
    for k, v in config.items():
        if k in ("where", "segments"):
            kw[k] = data[k]
        elif k == "key":
            kw[k] = jax.random.PRNGKey(v)
        else:
            kw[k] = v
    if name in ("dcg_metric", "ndcg_metric"):
        kw["weights"] = data["weights"]
    return kw


@pytest.mark.parametrize("name", RAX_METRICS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(c) or "plain")
def test_equals_rax(name, config):
    data = _batch(hash((name, tuple(config))) % 1000)
    kw = _kwargs(name, config, data)
    ours, theirs = getattr(metrics, name), getattr(rax, name)
    for reduce_fn in (jnp.mean, jnp.sum, None):
        got = ours(data["scores"], data["labels"], reduce_fn=reduce_fn, **kw)
        want = theirs(data["scores"], data["labels"], reduce_fn=reduce_fn, **kw)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("where", [False, True])
def test_opa_equals_rax(where):
    data = _batch(3)
    kw = {"where": data["where"]} if where else {}
    for reduce_fn in (jnp.mean, None):
        np.testing.assert_allclose(metrics.opa_metric(data["scores"], data["labels"], reduce_fn=reduce_fn, **kw),
                                   rax.opa_metric(data["scores"], data["labels"], reduce_fn=reduce_fn, **kw),
                                   rtol=1e-6)


def test_rax_docstring_values():
    # rax/_src/metrics_test.py: scores [0, 3, 1, 2], labels [0, 0, 1, 1].
    s, y = jnp.asarray([0.0, 3.0, 1.0, 2.0]), jnp.asarray([0.0, 0.0, 1.0, 1.0])
    log2 = math.log2
    np.testing.assert_allclose(metrics.mrr_metric(s, y), 0.5, rtol=1e-6)
    np.testing.assert_allclose(metrics.precision_metric(s, y, topn=3), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics.ap_metric(s, y), (0.5 + 2 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics.dcg_metric(s, y), 1 / log2(3) + 1 / log2(4), rtol=1e-6)
    np.testing.assert_allclose(metrics.ndcg_metric(s, y), (1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3)), rtol=1e-6)
    np.testing.assert_allclose(metrics.opa_metric(s, y), 2 / 4, rtol=1e-6)


@pytest.mark.parametrize("name", RAX_METRICS)
def test_several_cutoffs_stack_on_leading_axis(name):
    data = _batch(11)
    cutoffs = (1, 3, None, 5)
    for extra in ({}, {"segments": data["segments"]}):
        kw = dict(_kwargs(name, {"where": True}, data), **extra)
        for reduce_fn in (jnp.mean, None):
            got = getattr(metrics, name)(data["scores"], data["labels"], topn=cutoffs, reduce_fn=reduce_fn, **kw)
            want = jnp.stack([getattr(rax, name)(data["scores"], data["labels"], topn=n, reduce_fn=reduce_fn, **kw)
                              for n in cutoffs])
            assert got.shape == want.shape == (len(cutoffs),) + want.shape[1:]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BINARY)
def test_rel_threshold_equals_rax_on_binarized_labels(name):
    data = _batch(5)
    kw = {"where": data["where"], "topn": 4}
    got = getattr(metrics, name)(data["scores"], data["labels"], rel_threshold=2.0, reduce_fn=None, **kw)
    want = getattr(rax, name)(data["scores"], (data["labels"] >= 2).astype(jnp.float32), reduce_fn=None, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name", BINARY + ["ndcg_metric"])
def test_no_relevant_value(name):
    scores = jnp.asarray([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    labels = jnp.asarray([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    got = getattr(metrics, name)(scores, labels, no_relevant=-1.0, reduce_fn=None)
    want = getattr(rax, name)(scores, labels, reduce_fn=None)
    np.testing.assert_allclose(got, [want[0], -1.0], rtol=1e-6)
    assert float(want[0]) > 0


def test_precision_denominator():
    # 2 retrieved items (the rest -inf), one relevant: Rax divides by 2, trec_eval's P@5 by 5.
    scores = jnp.asarray([2.0, 1.0, -jnp.inf, -jnp.inf])
    labels = jnp.asarray([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(metrics.precision_metric(scores, labels, topn=5), 0.5)
    np.testing.assert_allclose(metrics.precision_metric(scores, labels, topn=5, denominator="topn"), 0.2)
    np.testing.assert_allclose(metrics.precision_metric(scores, labels, topn=(1, 5), denominator="topn"), [1.0, 0.2])
    with pytest.raises(ValueError, match="cut-offs >= 1"):
        metrics.precision_metric(scores, labels, denominator="topn")
    with pytest.raises(ValueError, match="denominator"):
        metrics.precision_metric(scores, labels, topn=5, denominator="k")


def test_bad_topn_raises():
    with pytest.raises(ValueError, match="topn"):
        metrics.ndcg_metric(jnp.zeros(3), jnp.zeros(3), topn=-1)
    with pytest.raises(ValueError, match="topn"):
        metrics.ndcg_metric(jnp.zeros(3), jnp.zeros(3), topn=2.5)


@pytest.mark.parametrize("name", RAX_METRICS + ["opa_metric"])
def test_masked_garbage_and_all_masked_lists(name):
    """Masked items holding ±inf/NaN scores, labels and weights change nothing; all-masked lists are excluded."""
    data = _batch(21)
    where = data["where"]
    clean = {k: jnp.where(where, data[k], 0.0) for k in ("scores", "labels", "weights")}
    garbage = jnp.asarray(np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), where.shape))
    dirty = {k: jnp.where(where, data[k], garbage) for k in clean}
    kw = {} if name == "opa_metric" else {"topn": 3}
    if name in ("dcg_metric", "ndcg_metric"):
        kw_clean, kw_dirty = dict(kw, weights=clean["weights"]), dict(kw, weights=dirty["weights"])
    else:
        kw_clean = kw_dirty = kw
    fn, ref = getattr(metrics, name), getattr(rax, name)
    want = ref(clean["scores"], clean["labels"], where=where, reduce_fn=None, **kw_clean)
    got = fn(dirty["scores"], dirty["labels"], where=where, reduce_fn=None, **kw_dirty)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert float(got[2]) == 0.0  # the all-masked list
    mean = fn(dirty["scores"], dirty["labels"], where=where, **kw_dirty)
    np.testing.assert_allclose(mean, np.delete(np.asarray(want), 2).mean(), rtol=1e-5)

    grad = jax.grad(lambda s: fn(s, dirty["labels"], where=where, **kw_dirty))(dirty["scores"])
    assert np.all(np.isfinite(grad))
    all_masked = fn(dirty["scores"], dirty["labels"], where=jnp.zeros_like(where), **kw_dirty)
    assert float(all_masked) == 0.0


@pytest.mark.parametrize("name", RAX_METRICS)
def test_approx_ranks_gradients_finite_under_masked_garbage(name):
    """With soft ranks (what approx_t12n injects) the gradient flows; masked ±inf/NaN scores get exactly 0."""
    data = _batch(4)
    where = data["where"]
    scores = jnp.asarray(np.random.default_rng(0).normal(size=where.shape).astype(np.float32))
    garbage = jnp.asarray(np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), where.shape))
    dirty = jnp.where(where, scores, garbage)
    fn = functools.partial(getattr(metrics, name), labels=data["labels"], where=where, topn=3,
                           rank_fn=approx_ranks, cutoff_fn=approx_cutoff)
    g_dirty = jax.grad(lambda s: fn(s))(dirty)
    g_clean = jax.grad(lambda s: fn(s))(jnp.where(where, scores, 0.0))
    assert np.all(np.isfinite(g_dirty)) and np.any(g_dirty != 0)
    np.testing.assert_allclose(g_dirty, g_clean, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(g_dirty)[~np.asarray(where)] == 0)
    loss = losses.approx_t12n(getattr(metrics, name))
    g = jax.grad(lambda s: loss(s, data["labels"], where=where))(dirty)
    assert np.all(np.isfinite(g))


def test_soft_ranks_equal_rax_formulas():
    """The per-item path (custom rank_fn) equals Rax fed the same soft ranks."""
    data = _batch(8)
    scores = jnp.asarray(np.random.default_rng(1).normal(size=data["where"].shape).astype(np.float32))
    # Masked labels are zeroed: Rax's soft ranks give masked items rank 1, and its AP then counts masked relevant
    # items as ranked above every item; ranking_jax ignores masked items there.
    labels = jnp.where(data["where"], data["labels"], 0.0)
    for name in RAX_METRICS:
        kw = _kwargs(name, {"where": True, "topn": 3}, data)
        got = getattr(metrics, name)(scores, labels, rank_fn=approx_ranks, cutoff_fn=approx_cutoff,
                                     reduce_fn=None, **kw)
        want = getattr(rax, name)(scores, labels, rank_fn=rax.utils.approx_ranks,
                                  cutoff_fn=rax.utils.approx_cutoff, reduce_fn=None, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_jit_equals_eager_and_vmap_equals_batch():
    data = _batch(9)
    for name in RAX_METRICS + ["opa_metric"]:
        fn = getattr(metrics, name)
        kw = {} if name == "opa_metric" else {"topn": (2, None)}
        f = functools.partial(fn, reduce_fn=None, **kw)
        eager = f(data["scores"], data["labels"], where=data["where"])
        jitted = jax.jit(f)(data["scores"], data["labels"], where=data["where"])
        vmapped = jax.vmap(lambda s, y, w: f(s, y, where=w), out_axes=-1)(data["scores"], data["labels"],
                                                                           data["where"])
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(vmapped, eager, rtol=1e-6, err_msg=name)


def test_empty_lists_and_leading_dims():
    for name in RAX_METRICS + ["opa_metric"]:
        assert float(jit(getattr(metrics, name))(jnp.zeros((2, 0)), jnp.zeros((2, 0)))) == 0.0
    data = _batch(12)
    s, y = data["scores"].reshape(2, 3, 9), data["labels"].reshape(2, 3, 9)
    for name in RAX_METRICS:
        np.testing.assert_allclose(jit(getattr(metrics, name), topn=3, reduce_fn=None)(s, y),
                                   getattr(rax, name)(s, y, topn=3, reduce_fn=None), rtol=1e-5, atol=1e-6)


_PERMUTED = {name: jax.jit(functools.partial(getattr(metrics, name), topn=(2, 5), reduce_fn=None))
             for name in RAX_METRICS}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=8, max_size=8, unique=True),
       st.lists(st.integers(0, 3), min_size=8, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8),
       st.permutations(list(range(8))))
def test_permutation_invariance(scores, labels, where, perm):
    s, y, w = (jnp.asarray(np.asarray(a, np.float32)) for a in (scores, labels, where))
    w = w.astype(bool)
    p = jnp.asarray(perm)
    for name, f in _PERMUTED.items():
        np.testing.assert_allclose(f(s[p], y[p], where=w[p]), f(s, y, where=w), rtol=1e-6, atol=1e-7, err_msg=name)


def test_reexports_transformations_and_lambdaweights():
    for name in ("approx_t12n", "bound_t12n", "gumbel_t12n", "labeldiff_lambdaweight", "dcg_lambdaweight",
                 "dcg2_lambdaweight"):
        assert name in metrics.__all__
        assert getattr(metrics, name) is getattr(losses, name)
    from ranking_jax import registry
    assert registry.lookup("metrics.ndcg_metric") is metrics.ndcg_metric


def test_import_losses_before_metrics():
    """No import cycle: losses imported first, then metrics (the other order is how this file imports them)."""
    code = "import ranking_jax.losses, ranking_jax.metrics as m; assert 'approx_t12n' in m.__all__"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).parents[1])


# ----------------------------------------------------------------------------------------------------------------
# Kendall tau.


def test_kendall_tau_equals_scipy():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (40, 10)).astype(np.float32)
    y = rng.integers(0, 3, (40, 10)).astype(np.float32)
    where = rng.random((40, 10)) > 0.2
    y[0] = 1.0  # constant labels: tau undefined
    where[1] = False  # all masked
    got = np.asarray(metrics.kendall_tau(s, y, where=where, reduce_fn=None))
    want = []
    for i in range(40):
        if where[i].sum() < 2:
            want.append(np.nan)
            continue
        want.append(scipy.stats.kendalltau(s[i][where[i]], y[i][where[i]]).statistic)
    want = np.asarray(want)
    defined = ~np.isnan(want)
    assert not defined[0] and not defined[1] and defined.sum() > 30
    np.testing.assert_allclose(got[defined], want[defined], rtol=1e-5, atol=1e-6)
    assert np.all(got[~defined] == 0)
    np.testing.assert_allclose(metrics.kendall_tau(s, y, where=where), want[defined].mean(), rtol=1e-5)
    garbage = np.where(where, s, np.nan)
    np.testing.assert_allclose(metrics.kendall_tau(garbage, y, where=where), want[defined].mean(), rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Ranking accuracy (Chen et al. 2024).


def test_ranking_accuracy_by_hand():
    chosen = jnp.asarray([-10.0, -5.0, -7.0, -3.0])
    rejected = jnp.asarray([-12.0, -5.0, -6.0, jnp.nan])
    where = jnp.asarray([True, True, True, False])
    # pair 0 correct, pair 1 tie (>= counts as correct), pair 2 wrong, pair 3 masked.
    np.testing.assert_allclose(metrics.ranking_accuracy(chosen, rejected, where=where), 2 / 3)
    np.testing.assert_allclose(metrics.ranking_accuracy(chosen, rejected, where=where, reduce_fn=None), [1, 1, 0, 0])
    # Length-normalised: -10/10 = -1 vs -12/4 = -3 (correct); -5/5 vs -5/1 (correct); -7/2 = -3.5 vs -6/3 = -2.
    lw, ll = jnp.asarray([10.0, 5.0, 2.0, 0.0]), jnp.asarray([4.0, 1.0, 3.0, 0.0])
    np.testing.assert_allclose(metrics.ranking_accuracy(chosen, rejected, chosen_lengths=lw, rejected_lengths=ll,
                                                        where=where, reduce_fn=None), [1, 1, 0, 0])
    with pytest.raises(ValueError, match="both"):
        metrics.ranking_accuracy(chosen, rejected, chosen_lengths=lw)


def test_idealized_ranking_accuracy_by_hand():
    ref_w = jnp.asarray([-10.0, -10.0, -10.0, -10.0])
    ref_l = jnp.asarray([-9.0, -9.0, -8.0, -12.0])
    alpha = jnp.asarray([0.6, 0.9, 1.0, 0.4])
    beta = 0.5
    # margin = (ref_w - ref_l) + log(alpha / (1 - alpha)) / beta:
    #  -1 + 2*log(1.5) = -0.189 -> 0;  -1 + 2*log(9) = 3.39 -> 1;  -2 + 2*log(0.999/0.001) = 11.8 -> 1;
    #   2 + 2*log(0.4/0.6) = 1.19 -> 1.
    np.testing.assert_allclose(metrics.idealized_ranking_accuracy(ref_w, ref_l, alpha=alpha, beta=beta,
                                                                  reduce_fn=None), [0, 1, 1, 1])
    # alpha = 1 becomes 1 - eps: log((1 - 1e-6) / 1e-6) = 13.8, so a -19 gap flips for beta = 0.5 (27.6) but not 1.
    np.testing.assert_allclose(metrics.idealized_ranking_accuracy(-20.0, -1.0, alpha=1.0, beta=0.5, eps=1e-6), 1.0)
    np.testing.assert_allclose(metrics.idealized_ranking_accuracy(-20.0, -1.0, alpha=1.0, beta=1.0, eps=1e-6), 0.0)


def test_dpo_flip_threshold_matches_ranking_accuracy():
    """Chen et al. Thm 4.1: pi(y_w) >= pi(y_l) iff L_DPO <= -log sigmoid(beta * c)."""
    rng = np.random.default_rng(3)
    pw, pl, rw, rl = (jnp.asarray(rng.normal(-20, 3, 200).astype(np.float32)) for _ in range(4))
    beta = 0.3
    dpo = losses.dpo_loss(pw, pl, rw, rl, beta=beta, reduce_fn=None)
    threshold = metrics.dpo_flip_threshold(rw, rl, beta=beta)
    correct = metrics.ranking_accuracy(pw, pl, reduce_fn=None)
    margin = np.abs(np.asarray(pw - pl))
    clear = margin > 1e-3  # away from float32 round-off at the boundary
    np.testing.assert_array_equal(np.asarray(dpo <= threshold)[clear], np.asarray(correct == 1)[clear])
    np.testing.assert_allclose(threshold, -np.log(1 / (1 + np.exp(-beta * np.asarray(rl - rw)))), rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Recall@k and OPIS.


def _np_recall_at_k(e, y, valid, ks):
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    dist = 1.0 - e @ e.T
    out = {k: [] for k in ks}
    for i in np.flatnonzero(valid):
        others = [j for j in np.flatnonzero(valid) if j != i]
        if not any(y[j] == y[i] for j in others):
            continue
        order = sorted(others, key=lambda j: (dist[i, j], j))
        for k in ks:
            out[k].append(float(any(y[j] == y[i] for j in order[:k])))
    return [np.mean(out[k]) for k in ks]


def test_recall_at_k_by_hand():
    # 1-D points; Euclidean: item 0 (class 0) has nearest item 2 (class 1), then item 1 (class 0).
    e = jnp.asarray([[0.0], [0.5], [0.3], [2.0], [5.0]])
    y = jnp.asarray([0, 0, 1, 1, 2])  # item 4 is a lone query: left out of the mean
    per_query = jit(metrics.recall_at_k, k=(1, 2), distance="euclidean", reduce_fn=None)(e, y)
    # item0: nn 2 (x), 1 (ok) -> R@1 0, R@2 1; item1: nn 2 (x), 0 (ok); item2: nn 1, 0 (x x) -> 0, 0;
    # item3: nn 1 (d=1.5, x), 2 (d=1.7, ok) -> 0, 1.
    np.testing.assert_array_equal(per_query, [[0, 0, 0, 0, 0], [1, 1, 0, 1, 0]])
    np.testing.assert_allclose(np.asarray(per_query)[:, :4].mean(1), [0.0, 0.75])
    np.testing.assert_allclose(jit(metrics.recall_at_k, k=2, distance="euclidean")(e, y), 0.75)


def test_recall_at_k_equals_numpy():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 12, 60)
    valid = rng.random(60) > 0.1
    got = jit(metrics.recall_at_k, k=[1, 2, 4, 8])(np.where(valid[:, None], e, np.nan), y, where=valid)
    np.testing.assert_allclose(got, _np_recall_at_k(e, y, valid, [1, 2, 4, 8]), rtol=1e-6)


def _np_opis(e, y, valid, far, grid, reference="overall", eps=None):
    e = e[valid].astype(np.float64)
    y = y[valid]
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    dist = 1.0 - e @ e.T
    n = len(y)
    neg_unordered = [dist[a, b] for a in range(n) for b in range(a + 1, n) if y[a] != y[b]]
    lo, hi = (np.quantile(neg_unordered, q, method="inverted_cdf") for q in far)
    t = np.linspace(lo, hi, grid)

    def utility(pos, neg):
        tpr = (np.asarray(pos)[:, None] <= t).mean(0)
        tnr = (np.asarray(neg)[:, None] > t).mean(0)
        return np.where(tpr + tnr > 0, 2 * tpr * tnr / np.maximum(tpr + tnr, 1e-300), 0.0)

    curves = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        pos = [dist[a, b] for a in members for b in members if a != b]
        neg = [dist[a, b] for a in members for b in range(n) if y[b] != c]
        if pos and neg:
            curves.append(utility(pos, neg))
    curves = np.asarray(curves)
    all_pos = [dist[a, b] for a in range(n) for b in range(n) if a != b and y[a] == y[b]]
    all_neg = [dist[a, b] for a in range(n) for b in range(n) if y[a] != y[b]]
    ref = utility(all_pos, all_neg) if reference == "overall" else curves.mean(0)
    integral = lambda f: np.trapezoid(f, t) / (hi - lo)  # noqa: E731
    if eps is None:
        return np.mean([integral((u - ref) ** 2) for u in curves])
    m = max(1, math.ceil(eps * len(curves)))
    ordered = np.sort(curves, axis=0)
    return integral((ordered[-m:].mean(0) - ordered[:m].mean(0)) ** 2)


def test_opis_by_hand():
    # Classes A {0, 0.1}, B {1, 1.3}, C {3, 3.5} on a line; thresholds 0.2, 0.3, 0.4; every negative pair is
    # farther than 0.9, so TNR = 1. Positive distances 0.1, 0.3, 0.5 give U_A = [1, 1, 1], U_B = [0, 1, 1],
    # U_C = [0, 0, 0]; pooled TPR = [1/3, 2/3, 2/3] gives U = [0.5, 0.8, 0.8]. Trapezoid weights [1/4, 1/2, 1/4]:
    # gaps A 0.0925, B 0.0925, C 0.5425 -> OPIS = 0.2425; against the mean class utility [1/3, 2/3, 2/3]: 2/9.
    e = jnp.asarray([[0.0], [0.1], [1.0], [1.3], [3.0], [3.5]])
    y = jnp.asarray([0, 0, 1, 1, 2, 2])
    kw = dict(distance="euclidean", distance_range=(0.2, 0.4), num_thresholds=3)
    u = jit(metric_learning.threshold_utilities, **kw)(e, y)
    np.testing.assert_allclose(u.thresholds, [0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(u.class_utility[np.asarray(u.class_valid)], [[1, 1, 1], [0, 1, 1], [0, 0, 0]],
                               atol=1e-6)
    np.testing.assert_allclose(u.overall_utility, [0.5, 0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(jit(metrics.opis, **kw)(e, y), 0.2425, rtol=1e-5)
    np.testing.assert_allclose(jit(metrics.opis, reference="mean", **kw)(e, y), 2 / 9, rtol=1e-5)
    # epsilon = 0.5 -> the best/worst 2 of 3 classes: gaps 0.5, 0.5, 0.5 -> 0.25.
    np.testing.assert_allclose(jit(metrics.eps_opis, epsilon=0.5, **kw)(e, y), 0.25, rtol=1e-5)
    # FAR calibration: the 12 negative distances sorted are 0.9 1 1.2 1.3 1.7 2 2.2 2.5 2.9 3 3.4 3.5; FAR 0.1
    # is reached at the ceil(1.2) = 2nd (1.0), FAR 0.5 at the 6th (2.0).
    u = jit(metric_learning.threshold_utilities, distance="euclidean", far_range=(0.1, 0.5), num_thresholds=5)(e, y)
    np.testing.assert_allclose(u.thresholds, [1.0, 1.25, 1.5, 1.75, 2.0], rtol=1e-6)


@pytest.mark.parametrize("reference", ["overall", "mean"])
def test_opis_equals_numpy(reference):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 4))
    y = rng.integers(0, 6, 50)
    spread = np.linspace(0.2, 1.5, 6)[y][:, None]  # classes of different spreads: inconsistent thresholds
    e = (centers[y] + spread * rng.normal(size=(50, 4))).astype(np.float32)
    valid = rng.random(50) > 0.1
    kw = dict(far_range=(0.05, 0.3), num_thresholds=21)
    got = jit(metrics.opis, reference=reference, **kw)(np.where(valid[:, None], e, np.nan), y, where=valid)
    want = _np_opis(e, y, valid, (0.05, 0.3), 21, reference)
    assert want > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4)
    got_eps = jit(metrics.eps_opis, epsilon=0.34, **kw)(e, y, where=valid)
    np.testing.assert_allclose(got_eps, _np_opis(e, y, valid, (0.05, 0.3), 21, eps=0.34), rtol=1e-4)
