"""Checks and oracles shared by the ranking-loss tests (tests/losses/test_pointwise.py, test_pairwise.py,
test_listwise.py, test_lambdaweights.py, test_t12n.py, test_ranking_losses.py).

Oracles: rax 0.4.0 for every function Rax has (same random inputs, masks, weights, segments, options). The checks,
each run per loss: Rax parity; masked inf/NaN never leaks into values or gradients; the structural invariants (jit ==
eager, all-masked lists left out, vmap == batch, where == truncation, segments == padded lists); mismatched shapes
named in the error. Plus the test-side shim that lets Rax 0.4.0's own t12n run on JAX 0.7."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax

from ranking_jax import losses as L
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
POINTWISE = list(pointwise.__all__)
PAIRWISE = [name for name in pairwise.__all__ if name != "pairwise_loss"]
LISTWISE = list(listwise.__all__)
LAMBDAWEIGHTS = ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"]


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


def call_loss(name, scores, labels, **kw):
    fn = getattr(L, name)
    if name in NO_WEIGHTS:
        kw.pop("weights", None)
    if name in NO_SEGMENTS:
        kw.pop("segments", None)
    return fn(scores, labels_for(name, labels), **kw)


# ------------------------------------------------------------------------------------------------------------------
# Rax parity.

OPTION_SETS = [(), ("where",), ("segments",), ("where", "weights", "segments")]
RAX_CASES = [(name, tuple(o for o in options if not (name in NO_WEIGHTS and o == "weights")))
             for name in RAX_LOSSES for options in OPTION_SETS]


def rax_cases(module_losses):
    """The (name, options) cases of ``test_rax_parity`` for the losses in ``module_losses``."""
    return [case for case in RAX_CASES if case[0] in module_losses]


def rax_case_id(x):
    return x if isinstance(x, str) else "+".join(x) or "plain"


def check_rax_parity(name, options):
    """Values (every reduction) and gradients of loss ``name`` with ``options`` equal Rax's."""
    d = data(seed=1)
    if name == "poly1_softmax_loss" and {"where", "segments"} <= set(options):
        # Rax 0.4.0 raises a broadcasting ValueError here; checked against padded lists instead
        # (test_poly1_segments_with_where_equals_padded_lists in tests/losses/test_listwise.py).
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


# ------------------------------------------------------------------------------------------------------------------
# NaN safety, masking, transformations.

def check_masked_inf_nan_never_leaks(name):
    """Masked ±inf/NaN scores, labels and weights change neither the value nor the gradient of ``name``."""
    d = data(seed=5)
    where = d["where"]
    poison = jnp.asarray(np.resize([-np.inf, np.inf, np.nan], where.shape), jnp.float32)
    bad_scores = jnp.where(where, d["scores"], poison)
    bad_labels = jnp.where(where, d["labels"], jnp.nan)
    bad_weights = jnp.where(where, d["weights"], jnp.nan)
    clean = call_loss(name, d["scores"], d["labels"], where=where, weights=d["weights"])
    for reduce_fn in (jnp.mean, None):
        value = call_loss(name, bad_scores, bad_labels, where=where, weights=bad_weights, reduce_fn=reduce_fn)
        close(value, call_loss(name, d["scores"], d["labels"], where=where, weights=d["weights"], reduce_fn=reduce_fn))
    assert np.isfinite(clean)
    grad = jax.grad(lambda s: call_loss(name, s, bad_labels, where=where, weights=bad_weights))(bad_scores)
    grad_clean = jax.grad(lambda s: call_loss(name, s, d["labels"], where=where, weights=d["weights"]))(d["scores"])
    assert np.isfinite(grad).all()
    assert np.all(np.asarray(grad)[~np.asarray(where)] == 0.0)
    close(grad, grad_clean)
    if name not in NO_SEGMENTS:
        grad = jax.grad(lambda s: call_loss(name, s, bad_labels, where=where, segments=d["segments"]))(bad_scores)
        assert np.isfinite(grad).all() and np.all(np.asarray(grad)[~np.asarray(where)] == 0.0)


SEGMENTS = np.asarray([0, 0, 1, 1, 1, 2, 2])
PADDED = [np.flatnonzero(SEGMENTS == k) for k in range(3)]


def structure_outputs(name, row_valid, s, y, w):
    """Everything the invariants need, computed in one compiled function per loss."""
    fn = functools.partial(call_loss, name)
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


def check_structure(name):
    """jit == eager; all-masked lists left out with zero gradients; vmap == batch; sum(unreduced) == sum;
    leading dims; where == truncation; segments == padded lists."""
    d = data(seed=7)
    s, y, w = d["scores"], d["labels"], d["where"]
    out = jax.jit(functools.partial(structure_outputs, name, np.flatnonzero(np.asarray(w[0]))),
                  compiler_options=FAST_COMPILE)(s, y, w)
    close(out["value"], call_loss(name, s, y, where=w))
    close(out["grad"], jax.grad(lambda x: call_loss(name, x, y, where=w))(s))
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


def check_mismatched_shapes(name):
    """Mismatched labels / where shapes raise a ValueError naming the function and the argument."""
    s = jnp.zeros((4, 7))
    with pytest.raises(ValueError, match=f"{name}: labels has shape \\(4, 6\\) but scores has shape \\(4, 7\\)"):
        getattr(L, name)(s, jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match=f"{name}: where has shape \\(7,\\)"):
        getattr(L, name)(s, s, where=jnp.ones(7, bool))


# ------------------------------------------------------------------------------------------------------------------
# Rax 0.4.0's own t12n needs the jax.util.wraps that JAX 0.7 removed: a test-side shim.

def old_jax_util_wraps(wrapped, namestr=None, docstr=None, **kwargs):
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


class rax_t12n_shim:
    def __enter__(self):
        self.had = hasattr(jax, "util")
        self.saved = getattr(jax, "util", None)
        jax.util = types.SimpleNamespace(wraps=old_jax_util_wraps)
        return self

    def __exit__(self, *exc):
        if self.had:
            jax.util = self.saved
        else:
            del jax.util


def ranking_checks(names):
    """The four checks every ranking loss of ``names`` passes, as test functions a test module binds to its own
    names: ``test_rax_parity, test_masked_inf_nan_never_leaks, test_structure, test_mismatched_shapes_... =
    ranking_checks(LISTWISE)``."""
    @pytest.mark.parametrize("name,options", rax_cases(names), ids=rax_case_id)
    def rax_parity(name, options):
        check_rax_parity(name, options)

    @pytest.mark.parametrize("name", names)
    def masked_inf_nan_never_leaks(name):
        check_masked_inf_nan_never_leaks(name)

    @pytest.mark.parametrize("name", names)
    def structure(name):
        """jit == eager; all-masked lists left out with zero gradients; vmap == batch; sum(unreduced) == sum;
        leading dims; where == truncation; segments == padded lists."""
        check_structure(name)

    @pytest.mark.parametrize("name", names)
    def mismatched_shapes(name):
        check_mismatched_shapes(name)

    return rax_parity, masked_inf_nan_never_leaks, structure, mismatched_shapes
