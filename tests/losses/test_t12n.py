"""ranking_jax.losses.t12n (approx, bound, gumbel and segment transformations) against Rax 0.4.0's own t12n, run
with the test-side shim for the jax.util.wraps that JAX 0.7 removed (tests/_ranking_losses.py): values, gradients,
sampling from a key, masked inf/NaN."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax
from rax._src import t12n as rax_t12n

from _ranking_losses import close, data, rax_t12n_shim
from ranking_jax import losses as L


def test_rax_t12n_is_broken_without_the_shim():
    assert not hasattr(getattr(jax, "util", None), "wraps")
    with pytest.raises(AttributeError):
        rax_t12n.approx_t12n(rax.ndcg_metric)
    assert L.approx_t12n(rax.ndcg_metric).__name__ == "approx_ndcg_metric"


def test_approx_and_bound_t12n_match_rax():
    d = data(seed=17)
    s, y = d["scores"], d["labels"]
    with rax_t12n_shim():
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
    with rax_t12n_shim():
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
