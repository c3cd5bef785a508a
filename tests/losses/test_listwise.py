"""ranking_jax.losses.listwise: the Rax listwise losses against rax 0.4.0 (same random inputs, masks, weights,
segments, options); ListNet, ApproxNDCG and NeuralNDCG (and its transposed form) against NumPy ports of allRank's
listNet / approxNDCGLoss / neuralNDCG, position-aware ListMLE against a loop over its definition, NeuralNDCG's limits
(exact NDCG, Sinkhorn); and the checks every ranking loss passes (tests/_ranking_losses.py)."""

import jax.numpy as jnp
import numpy as np
import pytest
import rax

from _ranking_losses import LISTWISE, close, data, ranking_checks, rax_t12n_shim
from ranking_jax import losses as L
from ranking_jax import ops as U
from ranking_jax.losses import listwise


# ------------------------------------------------------------------------------------------------------------------
# The checks every ranking loss passes (tests/_ranking_losses.py).

(test_rax_parity, test_masked_inf_nan_never_leaks, test_structure,
 test_mismatched_shapes_name_the_function_and_argument) = ranking_checks(LISTWISE)


# ------------------------------------------------------------------------------------------------------------------
# Beyond Rax: hand-derived NumPy oracles (allRank semantics where allRank has the loss).

def test_poly1_segments_with_where_equals_padded_lists():
    s = jnp.asarray([0.5, 2.0, -1.0, 0.3, 1.2, 7.0])
    y = jnp.asarray([1.0, 2.0, 0.0, 3.0, 1.0, 1.0])
    seg = jnp.asarray([0, 0, 0, 1, 1, 1])
    w = jnp.asarray([True, True, True, True, True, False])
    padded = L.poly1_softmax_loss(jnp.asarray([[0.5, 2.0, -1.0], [0.3, 1.2, 0.0]]),
                                  jnp.asarray([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]]),
                                  where=jnp.asarray([[True, True, True], [True, True, False]]))
    close(L.poly1_softmax_loss(s, y, segments=seg, where=w), padded)


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
    with rax_t12n_shim():
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
