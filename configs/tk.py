"""TK (Hofstaetter et al. 2020): word embeddings (MiniLM's, frozen-able) + a 2-layer contextualizing transformer,
cosine similarity matrix, 11 RBF kernels (mu 1.0 .. -0.9, sigma 0.1), log-sum kernel features.

    python -m ranking_jax.main --config configs/tk.py:runlocal --workdir /tmp/tk

Args: runlocal, scifact, steps=N. As in the paper, the kernel/scoring parameters learn at 1e-4 beside the
embeddings' and transformer's 1e-5 (optimizer.lr_groups).
Expected (scifact, 1000 steps): re-rank nDCG@10 near BM25's (TK without MS MARCO pre-training is weak).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, scifact=False, steps=1000)
    c = defaults.text_ranking("tk")
    c.model.num_layers = 2
    c.train.num_steps = a.steps
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    c.optimizer.learning_rate = 1e-5
    c.optimizer.lr_groups = ((r"(kernel|dense|mix|scoring|linear|head)", 1e-4),)
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
        c.model.num_layers = 1
    return c
