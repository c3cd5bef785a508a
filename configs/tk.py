"""TK (Hofstaetter et al. 2020): word embeddings (MiniLM's) + a 2-layer contextualizing transformer,
cosine similarity matrix, 11 RBF kernels (mu 1.0 .. -0.9, sigma 0.1), log-sum kernel features.

    python -m ranking_jax.main --config configs/tk.py:runlocal --workdir /tmp/tk

Args: runlocal, scifact, steps=N (default 1000). As in the paper, the kernel/scoring parameters learn at 1e-4
beside the embeddings' and transformer's 1e-5 (optimizer.lr_groups).
Expected: not measured yet (the 2-step runlocal run is tested).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, **dict(defaults.TEXT_ARGS, steps=1000))
    c = defaults.text_variant(defaults.text_ranking("tk"), a, evaluations=4)
    c.model.num_layers = 1 if a.runlocal else 2
    c.optimizer.learning_rate = 1e-5
    c.optimizer.lr_groups = ((r"^(mixer|kernel_alpha|kernel_weights)$", 1e-4),)  # the kernel scoring, not the
    # transformer's Linear "kernel" weights
    return c
