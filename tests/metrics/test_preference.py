"""ranking_jax.metrics.preference: ranking accuracy and idealized ranking accuracy (Chen et al. 2024) by hand, and
the DPO flip threshold against the DPO loss (their Thm 4.1)."""

import jax.numpy as jnp
import numpy as np
import pytest

import ranking_jax.losses as losses
import ranking_jax.metrics as metrics


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
