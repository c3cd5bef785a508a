"""ranking_jax.metrics.ranking (DCG, NDCG, MRR, AP, precision, recall, OPA) against rax 0.4.0 and the values in Rax's
own tests: cut-offs, masks, segments, weights, soft ranks, masked garbage, jit/vmap, permutation invariance; and the
ranking_jax.metrics package: its re-exports of the transformations and lambdaweights, no import cycle with losses."""

import functools
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ROOT
import ranking_jax.losses as losses
import ranking_jax.metrics as metrics
from ranking_jax.ops import approx_cutoff, approx_ranks


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
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
