"""PreTT (MacAvaney et al. 2020): MiniLM's lower layers encode query and document apart (document
representations can be precomputed), the upper layers run on the concatenation, [CLS] -> linear head.

    python -m ranking_jax.main --config configs/prett.py:runlocal --workdir /tmp/prett

Args: runlocal, scifact, split=K (layers run apart; default 3 of 6), steps=N.
Expected (scifact, 300 steps): re-rank nDCG@10 between the bi-encoder's and the cross-encoder's.
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, scifact=False, split=3, steps=300)
    c = defaults.text_ranking("prett")
    c.model.split_layer = a.split
    c.train.num_steps = a.steps
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    if a.scifact:
        c.data.collection = "../shared/data/scifact"
        c.data.max_eval_queries = 100

    if a.runlocal:
        c.train.num_steps = 2
        c.train.eval_every = 2
        c.train.log_every = 1
        c.train.checkpoint_every = 2
        c.optimizer.warmup_steps = 0
        c.data.update({"list_size": 4, "batch_size": 8, "max_eval_queries": 8, "eval_depth": 8,
                       "eval_list_size": 8, "eval_batch_size": 8, "doc_length": 48, "query_length": 16})
        c.model.num_hidden_layers = 2
        c.model.split_layer = 1
    return c
