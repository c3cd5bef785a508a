"""PreTT (MacAvaney et al. 2020): MiniLM's lower layers encode query and document apart (document
representations can be precomputed), the upper layers run on the concatenation, [CLS] -> linear head.

    python -m ranking_jax.main --config configs/prett.py:runlocal --workdir /tmp/prett

Args: runlocal, scifact, split=K (layers run apart; default 3 of 6), steps=N.
Expected: not measured yet (the 2-step runlocal run is tested).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, split=3, **defaults.TEXT_ARGS)
    c = defaults.text_variant(defaults.text_ranking("prett"), a)
    c.model.split_layer = 1 if a.runlocal else a.split
    if a.runlocal:
        c.model.num_hidden_layers = 2
    return c
