"""ranking_jax.registry: specs resolve to functions with bound keywords and nested specs, and registered names are
the components only. Malformed or unknown specs (errors naming the fix: closest names, the character):
tests/faults/test_bad_config.py."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from ranking_jax import registry


def test_registry_resolves_call_with_bound_kwargs_and_nested_specs():
    from ranking_jax import losses, metrics
    fn = registry.lookup("losses.softmax_loss(reduce_fn=None)")
    assert isinstance(fn, functools.partial) and fn.func is losses.softmax_loss and fn.keywords == {"reduce_fn": None}
    assert registry.lookup("losses.softmax_loss") is losses.softmax_loss
    nested = registry.lookup("losses.pairwise_logistic_loss(lambdaweight_fn=lambdaweights.dcg_lambdaweight)")
    assert nested.keywords["lambdaweight_fn"] is losses.dcg_lambdaweight
    made, entry = registry.resolve("losses.approx_t12n(metrics.ndcg_metric, temperature=0.5)")
    assert entry.factory and entry.meta["view"] == "list"
    scores, labels = jnp.array([[2.0, 1.0, 0.0]]), jnp.array([[0.0, 1.0, 2.0]])
    np.testing.assert_allclose(made(scores, labels), losses.approx_t12n(metrics.ndcg_metric, temperature=0.5)(
        scores, labels), rtol=1e-6)


def test_only_components_are_registered():
    """Registered names come from the components' own decorators; no helper, state class or loader is there."""
    names = registry.names()
    assert {n.split(".")[0] for n in names} >= {"losses", "metrics", "models", "optimizers", "evaluators", "tasks",
                                                "first_stages", "lambdaweights"}
    for helper in ("losses.popularity_propensity", "losses.madpo_weight", "models.load_tokenizer",
                   "optimizers.SAMState", "optimizers.make", "shardings.make_mesh"):
        assert helper not in names


def test_registry_register_and_positional_args():
    @registry.register("testing.affine")
    def affine(x, *, a=1.0, b=0.0):
        return a * x + b

    assert registry.lookup("testing.affine(a=2.0, b=1.0)")(3.0) == 7.0
    assert registry.lookup("testing.affine")(3.0) == 3.0
    with pytest.raises(ValueError, match="already registered"):
        registry.register("testing.affine", lambda x: x)
