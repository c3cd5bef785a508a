"""Properties of the pointwise, pairwise and listwise losses checked on all of them at once (one test covers every
loss): Rax parity of the loss options (tau, epsilon, gain_fn, label_fn, ListMLE's tie-breaking key), extreme scores,
all-zero labels and empty lists, and (hypothesis) permutation and shift invariance."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax
from hypothesis import given, settings, strategies as st

from _ranking_losses import (FAST_COMPILE, NOT_SHIFT_INVARIANT, OURS, RAX_LOSSES, call_loss, close, data,
                             labels_for)
from ranking_jax import losses as L
from ranking_jax import ops as U


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
        assert np.isfinite(call_loss(name, s, y)) and np.isfinite(jax.grad(lambda x: call_loss(name, x, y))(s)).all()
    # Lists of size 0 give 0 (as Rax); all losses in one compiled function.
    empty = jax.jit(lambda s, y: [call_loss(name, s, y) for name in OURS], compiler_options=FAST_COMPILE)(
        jnp.zeros((2, 0)), jnp.zeros((2, 0)))
    assert [float(v) for v in empty] == [0.0] * len(OURS)


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
            return call_loss(name, s, y, where=w)

        base = fn(scores, labels, where)
        close(fn(scores[:, perm], labels[:, perm], where[:, perm]), base, rtol=1e-4, atol=1e-5)
        if name not in NOT_SHIFT_INVARIANT:
            close(fn(scores + shift, labels, where), base, rtol=1e-4, atol=1e-4)
