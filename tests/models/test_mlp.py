"""ranking_jax.models.mlp: the metric-learning MLP embedder against a NumPy forward (linear, LayerNorm, ReLU,
linear, L2 normalization) and its logical sharding axes."""

import numpy as np

from ranking_jax.models import mlp_embedder


def test_mlp_embedder_matches_numpy_forward():
    model = mlp_embedder(num_features=6, hidden=(5,), dim=3, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    out = np.asarray(model({"images": x}))
    w1, b1 = np.asarray(model.layers[0].kernel[...]), np.asarray(model.layers[0].bias[...])
    g, beta = np.asarray(model.norms[0].scale[...]), np.asarray(model.norms[0].bias[...])
    w2, b2 = np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])
    h = x @ w1 + b1
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6) * g + beta
    e = np.maximum(h, 0) @ w2 + b2
    np.testing.assert_allclose(out, e / np.linalg.norm(e, axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert model.layers[0].kernel.get_metadata()["out_sharding"] == ("embed", "mlp")
    assert model.out.kernel.get_metadata()["out_sharding"] == ("mlp", "embed")
