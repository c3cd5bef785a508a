"""MiniLM cross-encoder (BERT_CAT, [CLS] q [SEP] d -> linear) re-ranking BM25 candidates.

    python -m ranking_jax.main --config configs/cross_encoder.py:runlocal --workdir /tmp/ce
    python -m ranking_jax.main --config configs/cross_encoder.py:scifact --workdir /tmp/ce_scifact

Args (comma-separated): runlocal (2-core CPU smoke run), scifact (../shared/data/scifact, train/test qrels),
steps=N. Default collection: the ChatterBot Q->A corpus (PyPI). Listwise softmax loss over 1 positive +
7 BM25 negatives; swap with --config.loss=losses.pairwise_logistic_loss etc.
Expected (chatterbot, 300 steps): nDCG@10 of the re-ranked BM25 top-50 rises from the untrained head's
~0.2 to ~0.5-0.6 on the 163 held-out questions.
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, scifact=False, steps=300)
    c = defaults.text_ranking("cross_encoder")
    c.model.dtype = "float32"
    c.train.num_steps = a.steps
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    if a.scifact:
        c.data.collection = "../shared/data/scifact"
        c.data.max_eval_queries = 100
    if a.runlocal:
        c.train.num_steps = 2
        c.optimizer.warmup_steps = 0
        c.train.eval_every = 2
        c.train.log_every = 1
        c.data.list_size = 4
        c.data.batch_size = 8
        c.data.max_eval_queries = 8
        c.data.eval_depth = 8
        c.data.eval_list_size = 8
        c.data.doc_length = 48
        c.model.num_hidden_layers = 2
    return c
