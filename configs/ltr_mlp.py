"""Feature-based learning to rank: an MLP scorer on MSLR-WEB10K (SVMlight), any ranking loss.

    .venv/bin/python scripts/prepare_mslr_sample.py --out data/mslr_sample     # once: the real sample
    python -m ranking_jax.main --config configs/ltr_mlp.py --workdir /tmp/ltr
    python -m ranking_jax.main --config configs/ltr_mlp.py:full --workdir /tmp/ltr \
        --config.data.manual_dir=/path/to/MSLR-WEB10K                      # Fold1 of the full dataset

Args: full (mslr10k fold 1), custom (a folder of {train,vali,test}.txt given as data.manual_dir),
runlocal, steps=N. Swap the loss with one line, e.g. --config.loss=losses.listmle_loss or
--config.loss="losses.lambdaloss(scheme='ndcg2pp')" (see ranking_jax.losses).
Features are z-normalized per query. Expected: not measured yet (the 2-step runlocal run, the SIGKILL resume
and the optimizer swaps are tested on SVMlight files the tests write).
"""

from ranking_jax import defaults


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, full=False, custom=False, steps=500)
    c = defaults.base("letor")
    c.name = "ltr_mlp"
    c.model.name = "mlp_ranker"
    c.model.hidden = (256, 256, 128)
    c.model.dropout = 0.1
    c.model.num_features = 136
    c.data.update({"letor_config": "mslr_sample", "manual_dir": "data/mslr_sample", "train_split": "train",
                   "eval_split": "test", "normalization": "query_zscore", "list_size": 64, "batch_size": 16,
                   "eval_list_size": 256, "eval_batch_size": 16})
    if a.full:
        c.data.update({"letor_config": "mslr_web10k_fold1", "manual_dir": "", "eval_split": "test"})
    if a.custom:
        c.data.update({"letor_config": "custom", "manual_dir": ""})
    c.loss = "losses.softmax_loss"
    c.evals.measures = "nDCG@1 nDCG@5 nDCG@10"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.train.update({"num_steps": a.steps, "eval_every": 100, "checkpoint_every": 100})
    if a.runlocal:
        defaults.smoke(c)
        c.model.hidden = (32, 16)
        c.data.update({"list_size": 8, "batch_size": 8, "eval_list_size": 16, "eval_batch_size": 8})
    return c
