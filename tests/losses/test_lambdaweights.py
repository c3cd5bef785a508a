"""ranking_jax.losses.lambdaweights (label-difference, DCG and DCG2 lambdaweights) against rax 0.4.0, alone and as the
lambdaweight_fn of every pairwise loss; normalization with segments equal to padded lists (where Rax 0.4 differs);
mismatched shapes named."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import rax

from _ranking_losses import LAMBDAWEIGHTS, check_mismatched_shapes, close, data
from ranking_jax import losses as L
from ranking_jax import ops as U


@pytest.mark.parametrize("name", LAMBDAWEIGHTS)
def test_lambdaweight_parity(name):
    d = data(seed=4)
    s, y = d["scores"], d["labels"]
    cases = [{}, {"where": d["where"]}, {"segments": d["segments"]}, {"weights": d["weights"]},
             {"where": d["where"], "segments": d["segments"], "weights": d["weights"]}]
    if name != "labeldiff_lambdaweight":
        cases += [{"topn": 3}, {"normalize": True}, {"normalize": True, "topn": 2, "where": d["where"]},
                  {"normalize": True, "weights": d["weights"]}, {"topn": 2, "segments": d["segments"]},
                  {"gain_fn": lambda x: x, "discount_fn": lambda r: 1.0 / r}]
    if name == "dcg2_lambdaweight":
        cases += [{"light_discount": True}, {"light_discount": True, "topn": 3, "where": d["where"]}]
    for kw in cases:
        ours, theirs = getattr(L, name)(s, y, **kw), getattr(rax, name)(s, y, **kw)
        assert ours.shape == theirs.shape == (4, 49)
        valid = np.ones(ours.shape, bool)
        if "where" in kw:  # Rax's labeldiff weights pairs of two masked items; ours gives them 0
            valid = np.asarray(U.compute_pairs(kw["where"], np.logical_and))
            assert np.all(np.asarray(ours)[~valid] == 0)
        close(np.where(valid, ours, 0), np.where(valid, theirs, 0))
        # Used as lambdaweight_fn of every pairwise loss.
        loss_kw = {k: v for k, v in kw.items() if k in ("where", "segments", "weights")}
        lw_kw = {k: v for k, v in kw.items() if k not in loss_kw}
        for loss in ("pairwise_logistic_loss", "pairwise_hinge_loss", "pairwise_mse_loss"):
            close(getattr(L, loss)(s, y, lambdaweight_fn=functools.partial(getattr(L, name), **lw_kw), **loss_kw),
                  getattr(rax, loss)(s, y, lambdaweight_fn=functools.partial(getattr(rax, name), **lw_kw),
                                     **loss_kw))


def test_lambdaweight_normalize_with_segments_normalizes_every_item():
    """Rax 0.4 normalizes only the first item of each segment (its ideal DCG is 0 elsewhere); ours equals the same
    items laid out as separate padded lists."""
    s = jnp.asarray([[0.5, 2.0, -1.0, 0.3, 1.2]])
    y = jnp.asarray([[1.0, 2.0, 0.0, 3.0, 1.0]])
    seg = jnp.asarray([[0, 0, 0, 1, 1]])
    lw = L.dcg_lambdaweight(s, y, segments=seg, normalize=True).reshape(5, 5)
    padded_s = jnp.asarray([[0.5, 2.0, -1.0], [0.3, 1.2, 0.0]])
    padded_y = jnp.asarray([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    padded_w = jnp.asarray([[True, True, True], [True, True, False]])
    lw_padded = L.dcg_lambdaweight(padded_s, padded_y, where=padded_w, normalize=True).reshape(2, 3, 3)
    # Lambdaweights scale by the static list size (5 vs 3).
    close(lw[:3, :3] / 5, lw_padded[0] / 3)
    close(lw[3:, 3:] / 5, lw_padded[1, :2, :2] / 3)


@pytest.mark.parametrize("name", LAMBDAWEIGHTS)
def test_mismatched_shapes_name_the_function_and_argument(name):
    check_mismatched_shapes(name)
