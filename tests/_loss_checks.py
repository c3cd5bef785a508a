"""Helpers shared by the loss tests: jitted calls, NumPy oracles of small functions, and the masking /
transformation checks every loss must pass (the list and score-matrix losses of distill.py and contrastive.py, the
list losses of preference.py and debiasing.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under ``jax.jit`` (one compile instead of op-by-op eager dispatch)."""
    return jax.jit(functools.partial(fn, **kwargs))(*args)


def rng(seed=0):
    return np.random.default_rng(seed)


def softplus(x):
    return np.logaddexp(0.0, x)


def log_sigmoid(x):
    return -softplus(-x)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - scipy.special.logsumexp(x)


def assert_padding_invisible(value, grad, value0, grad0, *, n, axis=1, grad_atol=1e-6):
    """A call on padded inputs (valid items ``0..n-1`` along ``axis`` of the gradient, garbage after) equals the
    unpadded call ``(value0, grad0)``, with finite gradients that are exactly 0 on the padding."""
    np.testing.assert_allclose(value, value0, rtol=1e-5, atol=1e-6)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad))
    size = grad.shape[axis]
    np.testing.assert_array_equal(np.take(grad, np.arange(n, size), axis=axis), 0.0)
    np.testing.assert_allclose(np.take(grad, np.arange(n), axis=axis), grad0, rtol=1e-4, atol=grad_atol)


def assert_row_excluded(value, grad, expected, *, row=1):
    """A fully masked ``row`` is left out of the value (``expected``: the value without it), with finite
    gradients that are exactly 0 on it."""
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[row], 0.0)


def assert_jit_vmap_sum(f, arrays, *, vmapped=None):
    """jit == eager (unreduced); vmap over the leading axis == batched (``vmapped`` overrides how the vmapped
    values are computed); ``sum(unreduced) == reduce_fn=jnp.sum``. Returns the eager unreduced values."""
    eager = f(*arrays, reduce_fn=None)
    np.testing.assert_allclose(call(f, *arrays, reduce_fn=None), eager, rtol=1e-5, atol=1e-6)
    if vmapped is None:
        vmapped = jax.jit(jax.vmap(functools.partial(f, reduce_fn=None)))(*arrays)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.sum(eager), call(f, *arrays, reduce_fn=jnp.sum), rtol=1e-5, atol=1e-5)
    return eager


# ------------------------------------------------------------------ list and score-matrix losses
def list_case(fn, n_extra_arrays=1, *, round_targets=False, **kw):
    """Case for f(scores [B, n], *others [B, n], where=[B, n]); returns (fn, arrays). ``round_targets``: graded
    targets (the second array rounded to halves), for the losses that rank or correlate with them."""
    r = rng(20)
    arrays = [r.normal(size=(3, 5)).astype(np.float32) for _ in range(1 + n_extra_arrays)]
    arrays[1] = np.round(arrays[1] * 2) if round_targets else arrays[1]
    return functools.partial(fn, **kw), arrays


def matrix_case(fn, n_arrays=1, **kw):
    r = rng(21)
    return functools.partial(fn, **kw), [r.normal(size=(3, 5)).astype(np.float32) for _ in range(n_arrays)]


BAD = np.array([np.inf, -np.inf, np.nan], np.float32)


def check_padding_invisible(fn, arrays):
    """Masked ±inf/NaN padding of every array (and keyword array) changes neither value nor gradient."""
    b, n = arrays[0].shape
    pad = np.broadcast_to(BAD, (b, 3))
    padded = [np.concatenate([a, pad], -1) for a in arrays]
    where = np.concatenate([np.ones((b, n), bool), np.zeros((b, 3), bool)], -1)
    # The keyword arrays (labels) must be padded too.
    kw = {k: (np.concatenate([np.broadcast_to(v, (b, n)), np.zeros((b, 3))], -1) if isinstance(v, np.ndarray)
              else v) for k, v in fn.keywords.items()}
    padded_fn = functools.partial(fn.func, **kw)
    value, grad = jax.jit(jax.value_and_grad(lambda s, *a: padded_fn(s, *a, where=where)))(*padded)
    assert_padding_invisible(value, grad, *jax.jit(jax.value_and_grad(fn))(*arrays), n=n)


def check_all_masked_row_excluded(fn, arrays):
    """A fully masked row (NaN inside) is left out with zero gradients; everything masked gives 0."""
    where = np.ones(arrays[0].shape, bool)
    where[1] = False
    bad = [a.copy() for a in arrays]
    for a in bad:
        a[1] = np.nan
    value_and_grad = jax.jit(jax.value_and_grad(lambda s, w, *a: fn(s, *a, where=w)))
    value, grad = value_and_grad(bad[0], where, *bad[1:])
    assert_row_excluded(value, grad, jax.jit(fn)(*[a[[0, 2]] for a in arrays]))
    # Everything masked: 0 with zero gradients.
    value, grad = value_and_grad(bad[0], np.zeros_like(where), *bad[1:])
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def check_jit_vmap(fn, arrays, *, score_matrix=False):
    """jit == eager; vmap == batch (over a leading batch of matrices for the ``score_matrix`` losses); sum of the
    unreduced values == ``reduce_fn=jnp.sum``."""
    np.testing.assert_allclose(jax.jit(fn)(*arrays), fn(*arrays), rtol=1e-5, atol=1e-6)
    if score_matrix:
        # Score-matrix losses: vmap over a leading batch of matrices.
        np.testing.assert_allclose(call(fn, *arrays, reduce_fn=None), fn(*arrays, reduce_fn=None), rtol=1e-5,
                                   atol=1e-6)
        stacked = [np.stack([a, a[::-1]]) for a in arrays]
        per = jax.jit(jax.vmap(lambda *xs: fn(*xs, reduce_fn=None)))(*stacked)
        np.testing.assert_allclose(per, call(fn, *stacked, reduce_fn=None), rtol=1e-5, atol=1e-6)
        return
    assert_jit_vmap_sum(fn, arrays)


def check_list_loss_masking(fn, make, kw):
    """A list loss ``fn(x, *others, **kw)`` (arrays from ``make(rng)``): NaN padding invisible, a fully masked list
    excluded with zero gradients, jit == eager, vmap == batch, sum(unreduced) == jnp.sum."""
    arrays = [np.asarray(a, np.float32) for a in make(rng(13))]
    pad = 2

    def pad_array(a, axes):
        for axis in axes:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, pad)
            a = np.pad(a, widths, constant_values=np.nan)
        return a

    padded = [pad_array(a, [-1, -2] if a.ndim == 3 else [-1]) for a in arrays]
    pkw = {k: (pad_array(np.broadcast_to(v, (3, 5)).astype(np.float32), [-1]) if isinstance(v, np.ndarray) else v)
           for k, v in kw.items()}
    where = np.concatenate([np.ones((3, 5), bool), np.zeros((3, pad), bool)], -1)
    f = functools.partial(fn, **kw)
    fp = functools.partial(fn, **pkw)
    value, grad = jax.jit(jax.value_and_grad(lambda x, *a: fp(x, *a, where=where)))(*padded)
    assert_padding_invisible(value, grad, *jax.jit(jax.value_and_grad(f))(*arrays), n=5, grad_atol=1e-7)
    # A fully masked list: excluded, zero gradients.
    where2 = where.copy()
    where2[1] = False
    value, grad = jax.jit(jax.value_and_grad(lambda x, *a: fp(x, *a, where=where2)))(*padded)
    assert_row_excluded(value, grad, call(f, *[a[[0, 2]] for a in arrays]))
    assert_jit_vmap_sum(f, arrays)


def list_case_checks(cases, *, score_matrix=lambda fn: False):
    """The three checks of every ``{name: (fn, arrays)}`` case (:func:`list_case`, :func:`matrix_case`) as test
    functions a test module binds to its own names; ``score_matrix(fn)`` says which read an in-batch matrix."""
    import pytest

    @pytest.mark.parametrize("name", sorted(cases))
    def padding_invisible(name):
        fn, arrays = cases[name]
        check_padding_invisible(fn, arrays)

    @pytest.mark.parametrize("name", sorted(cases))
    def all_masked_row_excluded(name):
        fn, arrays = cases[name]
        check_all_masked_row_excluded(fn, arrays)

    @pytest.mark.parametrize("name", sorted(cases))
    def jit_vmap(name):
        fn, arrays = cases[name]
        check_jit_vmap(fn, arrays, score_matrix=score_matrix(fn))

    return padding_invisible, all_masked_row_excluded, jit_vmap
