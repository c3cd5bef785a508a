"""ranking_jax.models._common: encoder options of the family builders reached through registry specs (config
dicts, dropout overrides) and the errors for unknown options."""

import pytest

from _models import CFG
from ranking_jax import registry


def test_registry_specs_build_models():
    m = registry.lookup("models.cross_encoder(config={'vocab_size': 50, 'hidden_size': 16, 'num_hidden_layers': 1, "
                        "'num_attention_heads': 2, 'intermediate_size': 32}, hidden_dropout_prob=0.0)")()
    assert m.encoder.config.hidden_dropout_prob == 0.0 and m.encoder.config.vocab_size == 50
    with pytest.raises(TypeError, match="unknown encoder option"):
        registry.lookup("models.bi_encoder")(config=CFG, hidden_dropout=0.1)
    with pytest.raises(ValueError, match="pooling must be"):
        registry.lookup("models.bi_encoder")(config=CFG, pooling="sum")


def test_first_stage_prior_adds_the_first_stage_scores_to_list_scores_only():
    """``FirstStagePrior``: ``s = s_model + w * first_stage_scores`` in ``__call__`` and ``outputs``; the score matrix
    and the representations pass through unchanged."""
    import numpy as np

    from _models import text_batch
    from ranking_jax.models import bi_encoder
    from ranking_jax.models._common import FirstStagePrior
    inner = bi_encoder(config=CFG, pooling="mean")
    batch = text_batch()
    batch["first_stage_scores"] = np.random.default_rng(0).normal(size=batch["mask"].shape).astype(np.float32)
    model = FirstStagePrior(inner, 20.0)
    np.testing.assert_allclose(model(batch), np.asarray(inner(batch)) + 20.0 * batch["first_stage_scores"],
                               rtol=1e-6)
    reps = model.represent(batch)
    out, plain = model.outputs(reps, batch, ("scores", "score_matrix")), inner.outputs(reps, batch, ("score_matrix",))
    np.testing.assert_array_equal(out["score_matrix"], plain["score_matrix"])
    assert model.OUTPUTS == inner.OUTPUTS
