"""MADPO (Rho 2025): DPO, IPO, a β-DPO-style baseline and MADPO with a reward model trained here, on preference
pairs of three label qualities; the mean ground-truth reward of the policy's choice.

    python scripts/reproduce.py --table madpo                # MLP over frozen MiniLM features, 3 seeds
    python scripts/reproduce.py --table madpo --scale full   # MiniLM cross-encoder fine-tuned end to end

Every row is ``configs/preference.py`` (``bradley_terry`` for the reward model, ``dpo``/``ipo``/``madpo``, and
``dpo`` with ``losses.beta_dpo_loss``) on ``ranking_jax.data.chatterbot.write_policy_preferences`` data.
"""

import pathlib
import types

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIERS = {"high": 4.0, "medium": 1.0, "low": 0.25}  # Bradley-Terry label scale
POLICY_SMALL = ("an MLP (256 hidden units) over frozen all-MiniLM-L6-v2 sentence features [e(x), e(y), e(x)·e(y)] "
                "(the reward model has the same form)")
POLICY_FULL = "a cross-encoder fine-tuned from all-MiniLM-L6-v2 (prompt ≤ 32, response ≤ 64 tokens)"
POLICIES = {"dpo": ("dpo", {}), "ipo": ("ipo", {}), "beta_dpo": ("dpo", {"loss": "losses.beta_dpo_loss(beta=0.1)"}),
            "madpo": ("madpo", {})}

PAPER = """
Rho 2025 (arXiv 2510.05342 v1; the official repository's README), mean ground-truth reward of the policy's
continuations on 2,000 IMDB prompts (Gemma-3-270m policy, sentiment reward in [-3, 3]):

| method | High | Medium | Low |
|---|---|---|---|
| MADPO | 2.23 | 2.23 | 1.95 |
| β-DPO | 1.67 | 1.84 | 1.76 |
| DPO | 1.62 | 1.71 | 1.48 |
| IPO | 0.35 | 0.31 | 0.10 |

Stated: MADPO beats the next best (β-DPO) by 33.3% (High), 20.8% (Medium) and 10.5% (Low).
"""


def get_table(scale: str = "small") -> types.SimpleNamespace:
    full = scale == "full"
    if full:  # the cross-encoder policy: all of MiniLM fine-tuned
        features, steps, lr = "", 1000, 3e-5
        model = {"data.prompt_length": 32, "data.response_length": 64, "optimizer.learning_rate": lr}
    else:  # an MLP over frozen MiniLM sentence features
        features, steps, lr = ",features", 1000, 1e-3
        model = {}
    model.update({"train.eval_every": 0, "train.checkpoint_every": steps})
    t = types.SimpleNamespace()
    t.title = "MADPO vs DPO, IPO and β-DPO under three label qualities (softmax policy over candidate responses)"
    t.paper = PAPER
    # the {placeholders} of tables/madpo.notes.md, the table's hand-written notes
    t.notes_values = dict(policy=POLICY_FULL if full else POLICY_SMALL, steps=steps, epochs=steps * 16 / 2925,
                          n_test=163, lr=lr, seeds=3)
    t.seeds = [0, 1, 2]
    t.rows = {}
    for tier in TIERS:
        data = {"data.manual_dir": str(data_dir(tier)), **model}
        t.rows[f"rm_{tier}"] = {"config": f"configs/preference.py:bradley_terry{features},steps={steps}",
                                "overrides": {**data, "export_dir": "rm"}}
        for name, (variant, extra) in POLICIES.items():
            overrides = {**data, **extra}
            if variant == "madpo":
                overrides["data.reward_model"] = "{rm_%s}/rm" % tier
            t.rows[f"{name}_{tier}"] = {"config": f"configs/preference.py:{variant}{features},steps={steps}",
                                        "overrides": overrides}
    t.columns = [("expected reward", "policy/expected_reward", True), ("greedy reward", "policy/greedy_reward", True),
                 ("pair accuracy", "preference/accuracy", True)]
    t.paired = "query:policy.run"
    t.unit = "prompts"
    t.claims = []
    for tier in TIERS:
        for other in ("dpo", "beta_dpo", "ipo"):
            t.claims.append({"text": f"MADPO beats {other} ({tier} label quality)", "better": f"madpo_{tier}",
                             "worse": f"{other}_{tier}", "column": "expected reward"})
    return t


def data_dir(tier: str) -> pathlib.Path:
    return ROOT / "data" / "madpo" / tier


def prepare(scale: str) -> None:
    """Writes the three tiers' pairs and candidate sets (ChatterBot corpus, PyPI)."""
    from ranking_jax.data import chatterbot
    for tier, label_scale in TIERS.items():
        chatterbot.write_policy_preferences(data_dir(tier), label_scale=label_scale, seed=0)
