"""MiniLM bi-encoder (BERT_DOT: mean pooling, dot product) trained listwise on BM25 hard negatives;
evaluated by dense retrieval over the whole corpus and by re-ranking BM25's top 50.

    python -m ranking_jax.main --config configs/bi_encoder.py:runlocal --workdir /tmp/be
    python -m ranking_jax.main --config configs/bi_encoder.py:scifact --workdir /tmp/be_scifact

Args: runlocal, scifact (../shared/data/scifact), cls (CLS pooling), cosine, separate (two towers), steps=N.
In-batch negatives: swap the loss for the score-matrix form with --config.loss=... (see losses.contrastive).
Expected (scifact, 300 steps): retrieval nDCG@10 from zero-shot MiniLM's ~0.64 to ~0.66-0.68.
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, scifact=False, cls=False, cosine=False, separate=False, steps=300)
    c = defaults.text_ranking("bi_encoder")
    c.model.pooling = "cls" if a.cls else "mean"
    c.model.similarity = "cosine" if a.cosine else "dot"
    c.model.shared = not a.separate
    c.train.num_steps = a.steps
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.optimizer.learning_rate = 2e-5
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
    return c
