"""ranking_jax.scoring: dot/cosine (and their in-batch matrices), MaxSim, kernel pooling and exact top-k against
NumPy (a naive MaxSim loop, the K-NRM kernel formula, a full sort)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _models import B, L, np_maxsim
from ranking_jax import scoring


def test_dot_cosine_and_matrices():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(B, 5)), rng.normal(size=(B, L, 5))
    np.testing.assert_allclose(scoring.dot(jnp.asarray(q), jnp.asarray(d)), np.einsum("bd,bld->bl", q, d), rtol=1e-5)
    cos = np.einsum("bd,bld->bl", q, d) / np.linalg.norm(q, axis=-1)[:, None] / np.linalg.norm(d, axis=-1)
    np.testing.assert_allclose(scoring.cosine(jnp.asarray(q), jnp.asarray(d)), cos, rtol=1e-5)
    dd = d.reshape(-1, 5)
    np.testing.assert_allclose(scoring.dot_matrix(jnp.asarray(q), jnp.asarray(dd)), q @ dd.T, rtol=1e-5)
    n = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(scoring.cosine_matrix(jnp.asarray(q), jnp.asarray(dd)), n(q) @ n(dd).T, rtol=1e-5)
    # a zero vector: finite value and gradient
    g = jax.grad(lambda x: scoring.cosine(x, jnp.ones((1, 5))).sum())(jnp.zeros(5))
    assert np.isfinite(g).all()


@pytest.mark.parametrize("chunk", [None, 1, 2, 16])
def test_maxsim_matches_naive_loop(chunk):
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(B, 4, 6)), rng.normal(size=(B, 5, 3, 6))
    qm, dm = rng.random((B, 4)) > 0.3, rng.random((B, 5, 3)) > 0.3
    dm[0, 2] = False
    ours = scoring.maxsim(jnp.asarray(q), jnp.asarray(d), jnp.asarray(qm), jnp.asarray(dm), chunk_size=chunk)
    np.testing.assert_allclose(ours, np_maxsim(q, d, qm, dm), rtol=1e-5, atol=1e-5)
    assert ours[0, 2] == 0.0
    grad = jax.grad(lambda d: scoring.maxsim(jnp.asarray(q), d, jnp.asarray(qm), jnp.asarray(dm),
                                             chunk_size=chunk).sum())(jnp.asarray(d))
    ref = jax.grad(lambda d: scoring.maxsim(jnp.asarray(q), d, jnp.asarray(qm), jnp.asarray(dm),
                                            chunk_size=None).sum())(jnp.asarray(d))
    np.testing.assert_allclose(grad, ref, atol=1e-6)
    assert np.isfinite(grad).all() and not np.asarray(grad)[~dm].any()  # masked tokens get no gradient
    mat = scoring.maxsim_matrix(jnp.asarray(q), jnp.asarray(d.reshape(-1, 3, 6)), jnp.asarray(qm),
                                jnp.asarray(dm.reshape(-1, 3)), chunk_size=chunk)
    full = np_maxsim(q, np.broadcast_to(d.reshape(1, -1, 3, 6), (B, 10, 3, 6)), qm,
                     np.broadcast_to(dm.reshape(1, -1, 3), (B, 10, 3)))
    np.testing.assert_allclose(mat, full, rtol=1e-5, atol=1e-5)


def test_kernel_pooling_matches_knrm_formula():
    rng = np.random.default_rng(2)
    sim = rng.uniform(-1, 1, (2, 4, 5))
    sim[0, 0, 0] = 1.0
    qm, dm = rng.random((2, 4)) > 0.3, rng.random((2, 5)) > 0.3
    mus, sigmas = scoring.TK_KERNEL_MUS, [0.001] + [0.1] * 10
    alpha = rng.uniform(0.5, 2, 11)
    ref = np.zeros((2, 11))
    for b in range(2):
        for k in range(11):
            for i in range(4):
                if qm[b, i]:
                    s = sum(math.exp(-(sim[b, i, j] - mus[k]) ** 2 / (2 * sigmas[k] ** 2)) for j in range(5) if dm[b, j])
                    ref[b, k] += math.log(max(alpha[k] * s, 1e-10))
    ours = scoring.kernel_pooling(jnp.asarray(sim, jnp.float32), jnp.asarray(qm), jnp.asarray(dm), mus=mus,
                                  sigmas=sigmas, scale=jnp.asarray(alpha, jnp.float32))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    assert scoring.TK_KERNEL_MUS == (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9)


def test_exact_topk_chunked_equals_full_sort():
    rng = np.random.default_rng(3)
    q, d = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(103, 8)).astype(np.float32)
    s, i = scoring.exact_topk(jnp.asarray(q), jnp.asarray(d), 10, chunk=16)
    full = q @ d.T
    np.testing.assert_array_equal(i, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(s, np.take_along_axis(full, i, 1), rtol=1e-5)
