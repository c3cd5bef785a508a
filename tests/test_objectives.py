"""Losses composed in the config: parsing, weighted sums, each view's call. The errors a user meets (a loss that does
not parse, a view the model cannot produce, a batch field the task lacks): tests/faults/test_bad_config.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ranking_jax import losses, objectives, views

RNG = np.random.default_rng(0)
B, L = 4, 3


def _list_batch():
    labels = np.zeros((B, L), np.float32)
    labels[:, 0] = 1.0
    labels[1, 2] = 2.0
    mask = np.ones((B, L), bool)
    mask[3, 2] = False
    return {"labels": jnp.asarray(labels), "mask": jnp.asarray(mask),
            "teacher_scores": jnp.asarray(RNG.normal(size=(B, L)), jnp.float32)}


def test_weighted_sum_equals_the_sum_of_its_terms_in_value_and_gradient():
    batch = _list_batch()
    scores = jnp.asarray(RNG.normal(size=(B, L)), jnp.float32)
    objective = objectives.parse("losses.softmax_loss + 0.25 * losses.ranknet_loss(sigma=2.0) + "
                                 "losses.mse_distill_loss * 3")
    assert [(t.name, t.weight) for t in objective.terms] == [("softmax_loss", 1.0), ("ranknet_loss", 0.25),
                                                             ("mse_distill_loss", 3.0)]

    def by_hand(s):
        w = batch["mask"]
        return (losses.softmax_loss(s, batch["labels"], where=w)
                + 0.25 * losses.ranknet_loss(s, batch["labels"], sigma=2.0, where=w)
                + 3.0 * losses.mse_distill_loss(s, batch["teacher_scores"], where=w))

    (total, terms), grad = jax.value_and_grad(lambda s: objective({"scores": s}, batch), has_aux=True)(scores)
    np.testing.assert_allclose(total, by_hand(scores), rtol=1e-6)
    np.testing.assert_allclose(grad, jax.grad(by_hand)(scores), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(terms["ranknet_loss"], losses.ranknet_loss(scores, batch["labels"], sigma=2.0,
                                                                          where=batch["mask"]), rtol=1e-6)
    assert objective.outputs == ("scores",) and objective.batch_keys == {"labels", "mask", "teacher_scores"}
    twice = objectives.parse("losses.softmax_loss + 0.5 * losses.softmax_loss")
    assert [t.name for t in twice.terms] == ["softmax_loss", "softmax_loss_2"]


def test_matrix_view_is_in_batch_infonce_with_hard_negatives():
    """Row b of the in-batch matrix: its own labelled documents are positives, its own unlabelled ones hard
    negatives, every other query's documents negatives; padded documents are nowhere. Checked against a NumPy
    InfoNCE over the same matrix."""
    batch = _list_batch()
    matrix = RNG.normal(size=(B, B * L)).astype(np.float32)
    objective = objectives.parse("losses.infonce_loss(temperature=0.5)")
    value, _ = objective({"score_matrix": jnp.asarray(matrix)}, batch)
    mask = np.asarray(batch["mask"]).reshape(-1)
    expected = []
    for b in range(B):
        own = np.zeros(B * L, bool)
        own[b * L:(b + 1) * L] = True
        pos = own & (np.asarray(batch["labels"]).reshape(-1) > 0) & mask
        neg = mask & ~pos
        z = matrix[b] / 0.5
        expected.append(np.mean([np.logaddexp.reduce(np.r_[z[p], z[neg]]) - z[p] for p in np.flatnonzero(pos)]))
    np.testing.assert_allclose(value, np.mean(expected), rtol=1e-5)
    labels, where = views.in_batch_labels(batch["labels"], batch["mask"])
    assert labels.shape == where.shape == (B, B * L) and float(labels[0, L]) == 0.0 and float(labels[1, L + 2]) == 2


def test_pairs_views_read_chosen_rejected_and_reference():
    s = jnp.asarray(RNG.normal(size=(B, 2)), jnp.float32)
    ref = jnp.asarray(RNG.normal(size=(B, 2)), jnp.float32)
    batch = {"mask": jnp.ones((B, 2), bool), "tie": jnp.array([False, True, False, False]),
             "labels": jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), "reference_scores": ref,
             "chosen_score": jnp.arange(B, dtype=jnp.float32), "rejected_score": jnp.zeros(B)}
    untied = ~batch["tie"]
    cases = {
        "losses.dpo_loss(beta=0.1)": losses.dpo_loss(s[:, 0], s[:, 1], ref[:, 0], ref[:, 1], beta=0.1, where=untied),
        "losses.madpo_loss": losses.madpo_loss(s[:, 0], s[:, 1], ref[:, 0], ref[:, 1], batch["chosen_score"],
                                               batch["rejected_score"], where=untied),
        "losses.mapo_loss": losses.mapo_loss(-s[:, 0], -s[:, 1], where=untied),
        "losses.bradley_terry_loss": losses.bradley_terry_loss(s[:, 0], s[:, 1], ties=batch["tie"]),
        "losses.irpo_loss": losses.irpo_loss(s, ref, batch["labels"], where=batch["mask"]),
        "losses.soft_bradley_terry_loss": losses.soft_bradley_terry_loss(
            s, jnp.array([[[0.5, 1.0], [0.0, 0.5]]] * B).at[1].set(0.5), where=batch["mask"]),
    }
    for spec, expected in cases.items():
        value, _ = objectives.parse(spec)({"scores": s}, batch)
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=spec)
    assert objectives.parse("losses.dpo_loss").needs_reference
    assert not objectives.parse("losses.mapo_loss").needs_reference


def test_losses_that_need_a_key_get_one_per_term():
    batch = _list_batch()
    scores = jnp.asarray(RNG.normal(size=(B, L)), jnp.float32)
    objective = objectives.parse("losses.gumbel_t12n(losses.softmax_loss, samples=4)")
    a, _ = objective({"scores": scores}, batch, jax.random.key(0))
    b, _ = objective({"scores": scores}, batch, jax.random.key(0))
    c, _ = objective({"scores": scores}, batch, jax.random.key(1))
    assert a == b and a != c
    with pytest.raises(ValueError, match="needs a PRNG key"):
        objective({"scores": scores}, batch)
