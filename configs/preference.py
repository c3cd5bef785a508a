"""Preference learning with a cross-encoder: a Bradley-Terry reward model or DPO-family losses.

    python -m ranking_jax.main --config configs/preference.py --workdir /tmp/pref_bt
    python -m ranking_jax.main --config configs/preference.py:dpo --workdir /tmp/pref_dpo

Args (comma-separated): bradley_terry (default), dpo, ipo, madpo, features, steps=N, runlocal (2-step smoke run).
``features``: instead of the cross-encoder, an MLP (256 hidden) over frozen all-MiniLM-L6-v2 sentence features
[e(x), e(y), e(x) * e(y)] of the prompt and the response (embeddings computed once and cached): seconds per run.
Model: all-MiniLM-L6-v2 as a cross-encoder scoring ``[CLS] prompt [SEP] response [SEP]`` for the chosen and
the rejected response, a list of two ``[B, 2]``.
  bradley_terry  losses.pairwise_logistic_loss = -log sigma(s_chosen - s_rejected) over the list of two; any
                 ranking loss works unchanged (--config.loss=losses.softmax_loss ...), and losses.bradley_terry_loss
                 adds ties and margins.
  dpo / ipo      the DPO family reads the "pairs" view: the scores play the policy's log-likelihoods, the reference
                 is the initial model (scored once before training); beta = 0.1; dropout off (TRL's default for
                 DPO), so the step-0 DPO loss is exactly log 2.
  madpo          DPO weighted by reward-model margins (Rho 2025); the reward model is the frozen zero-shot
                 MiniLM bi-encoder, reward = 20 * cos(prompt, response) (data.reward_model="minilm").
Data (default): a synthetic-preference set from real text, built from the ChatterBot corpus (PyPI): prompt =
a question, chosen = its human-written answer, rejected = an answer to a question of another category
(684 training / 214 test pairs; ranking_jax.data.chatterbot.write_preferences). Point data.manual_dir at a
folder of train.jsonl / test.jsonl ({prompt, chosen, rejected}) for other data.
Reported under ``preference/``: accuracy (share of test pairs with s_chosen >= s_rejected), margin (mean
s_chosen - s_rejected) and the objective's loss over all test pairs.
Expected (seed 0, 300 steps, 15-30 min on 2 CPU cores): held-out accuracy 0.528 (untrained head) -> 0.897 with
bradley_terry (loss 0.694 -> 0.321, margin 4.1) and -> 0.865 with dpo (loss log 2 -> 0.441, margin 6.9); ipo and
madpo are smoke-tested only (runlocal).
"""

from ml_collections import ConfigDict

from ranking_jax import defaults

VARIANTS = {"bradley_terry": "losses.pairwise_logistic_loss", "dpo": "losses.dpo_loss(beta=0.1)",
            "ipo": "losses.ipo_loss(beta=0.1)", "madpo": "losses.madpo_loss(beta=0.1)"}


def get_config(arg=None):
    a = defaults.parse_arg(arg, runlocal=False, bradley_terry=False, dpo=False, ipo=False, madpo=False,
                           features=False, steps=300)
    chosen = [v for v in VARIANTS if a[v]] or ["bradley_terry"]
    if len(chosen) > 1:
        raise ValueError(f"config args {chosen}: pick one variant of {sorted(VARIANTS)}")
    variant = chosen[0]
    policy = variant != "bradley_terry"  # a DPO-family policy, not a reward model
    c = defaults.preference()
    c.name = f"preference_{variant}"
    c.loss = VARIANTS[variant]
    c.model.dtype = "float32"
    if a.features:
        c.model = ConfigDict({"name": "mlp_ranker", "hidden": (256,), "dropout": 0.0 if policy else 0.1})
        c.data.features = "minilm"
        c.optimizer.update({"name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0})
    elif policy:
        c.model.hidden_dropout_prob = 0.0
        c.model.attention_probs_dropout_prob = 0.0
    if variant == "madpo":
        c.data.reward_model = "minilm"  # the rewarded_pairs view reads chosen_score / rejected_score
    c.train.update({"num_steps": a.steps, "log_every": 10, "eval_every": 100, "checkpoint_every": 100})
    if a.runlocal:
        defaults.smoke(c)
        c.data.batch_size = 8
        c.data.eval_batch_size = 32
        c.data.prompt_length = 16
        c.data.response_length = 32
        if not a.features:
            c.model.num_hidden_layers = 2
    return c
