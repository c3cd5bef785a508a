"""Helpers shared by the loss tests: jitted calls, NumPy oracles of small functions, and the masking /
transformation checks every loss must pass."""

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
