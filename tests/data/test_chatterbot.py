"""ranking_jax.data.chatterbot: the policy-preference files follow the corpus' own question / answer / category
links (rewards 2 / 1 / 0), and their label noise matches Bradley-Terry flips at each label scale."""

import json
import math

import numpy as np


def test_policy_preferences_rewards_and_label_noise(tmp_path):
    """Rewards follow the corpus' own question/answer/category links; label flips match Bradley-Terry."""
    from ranking_jax.data import chatterbot
    answers, category = {}, {}
    for cat, q, a in chatterbot._exchanges():
        answers.setdefault(q, set()).add(a)
        category.setdefault(q, cat)
    for scale in (4.0, 1.0, 0.25):
        folder = chatterbot.write_policy_preferences(tmp_path / str(scale), label_scale=scale)
        train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
        sets = [json.loads(line) for line in (folder / "candidates_test.jsonl").read_text().splitlines()]

        def reward(q, y):
            if y in answers[q]:
                return 2.0
            return 1.0 if any(y in answers[o] for o in answers if category[o] == category[q]) else 0.0

        for obj in sets:
            assert [reward(obj["prompt"], y) for y in obj["responses"]] == obj["rewards"]
            assert sorted(obj["rewards"]) == [0.0, 0.0, 1.0, 2.0]
        deltas = np.array([reward(r["prompt"], r["chosen"]) - reward(r["prompt"], r["rejected"]) for r in train])
        assert len(train) == 5 * len({r["prompt"] for r in train})  # every pair of a 4-candidate set but 0-vs-0
        assert set(np.abs(deltas)) == {1.0, 2.0}
        expected = np.mean(1.0 / (1.0 + np.exp(scale * np.abs(deltas))))  # P(flip) = sigmoid(-s |dr|)
        n = len(deltas)
        assert abs(np.mean(deltas < 0) - expected) < 4 * math.sqrt(expected * (1 - expected) / n), scale
