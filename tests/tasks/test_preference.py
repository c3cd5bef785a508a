"""The preference task end to end (2 steps of its runlocal configs), checked against independent computations:
preference accuracy / margin / Bradley-Terry loss from hand-tokenized pairs, the DPO loss at step 0 (policy ==
reference) = log 2, reward-model scores (a trained cross-encoder, or an MLP on frozen MiniLM sentence features) against
the exported model on hand-built inputs, and the policy evaluator against a NumPy softmax policy."""

import json
import math
import pathlib

import numpy as np
import pytest

from helpers import cache_entry, check_train_rows, load_config, run_config
from helpers import metric_rows as rows_of
from ranking_jax import data, models, objectives


@pytest.fixture(scope="module")
def pref_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pref_cache")


@pytest.fixture(scope="module")
def initial_scores(pref_cache):
    """The initial runlocal cross-encoder's scores of every test pair, tokenized by hand from test.jsonl."""
    config = load_config("preference", "runlocal")
    config.data.cache_dir = str(pref_cache)
    from ranking_jax.data import chatterbot
    folder = chatterbot.write_preferences(pref_cache / "hand")
    pairs = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    return hand_scores(models.from_config(config.model, seed=config.seed), pairs, config)


def hand_scores(model, pairs: list[dict], config) -> np.ndarray:
    """``model``'s scores ``[N, 2]`` of (prompt, chosen) and (prompt, rejected), ``[CLS] prompt [SEP] response
    [SEP]`` tokenized by hand."""
    tok = data.TextTokenizer()
    p_len, r_len = config.data.prompt_length, config.data.response_length
    length = p_len + r_len - 1
    ids = np.zeros((len(pairs), 2, length), np.int32)
    mask, types = np.zeros_like(ids), np.zeros_like(ids)
    for i, row in enumerate(pairs):
        prompt = [tok.cls] + tok.tokens([row["prompt"]])[0][:p_len - 2] + [tok.sep]
        for j, side in enumerate(("chosen", "rejected")):
            response = tok.tokens([row[side]])[0][:r_len - 2] + [tok.sep]
            n = len(prompt) + len(response)
            ids[i, j, :n], mask[i, j, :n], types[i, j, len(prompt):n] = prompt + response, 1, 1
    return np.asarray(model({"pair_ids": ids, "pair_mask": mask, "pair_type_ids": types}), np.float64)


def test_preference_bradley_terry_runlocal(tmp_path, pref_cache, initial_scores):
    config = load_config("preference", "runlocal")
    config.data.cache_dir = str(pref_cache)
    summary = run_config(config, tmp_path / "run")
    check_train_rows(tmp_path / "run")
    s = initial_scores
    assert len(s) == 214
    before = summary["eval_before"]
    assert before["preference/accuracy"] == pytest.approx(np.mean(s[:, 0] >= s[:, 1]), abs=1e-6)  # a float32 mean
    assert before["preference/margin"] == pytest.approx(np.mean(s[:, 0] - s[:, 1]), rel=1e-3, abs=1e-6)
    assert before["preference/loss"] == pytest.approx(np.mean(np.logaddexp(0.0, -(s[:, 0] - s[:, 1]))), rel=1e-5)


def test_preference_dpo_runlocal(tmp_path, pref_cache, initial_scores):
    config = load_config("preference", "runlocal,dpo")
    config.data.cache_dir = str(pref_cache)
    summary = run_config(config, tmp_path / "run")
    train = check_train_rows(tmp_path / "run")
    # Policy == reference at step 0 (dropout off): delta = 0, so -log sigmoid(0) = log 2 on every pair.
    assert train[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    before = summary["eval_before"]
    assert before["preference/loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    s = initial_scores
    assert before["preference/accuracy"] == pytest.approx(np.mean(s[:, 0] >= s[:, 1]), abs=1e-6)  # a float32 mean
    assert np.isfinite(summary["eval_after"]["preference/loss"])


def test_a_loss_reading_reward_scores_needs_a_reward_model(tmp_path, pref_cache):
    """MADPO's view reads chosen_score / rejected_score; without a reward model the task says how to get them."""
    config = load_config("preference", "runlocal,madpo")
    config.data.cache_dir = str(pref_cache)
    config.data.reward_model = ""
    with pytest.raises(ValueError, match="madpo_loss.*chosen_score.*reward_model"):
        run_config(config, tmp_path / "run")


# ------------------------------------------------------------- trained reward models, policy evaluator
def policy_tier(tmp_path: pathlib.Path, *, train: int, test: int, sets: int) -> pathlib.Path:
    """The first lines of a label-scale-1 policy-preference folder (a slice, for speed)."""
    from ranking_jax.data import chatterbot
    full = chatterbot.write_policy_preferences(tmp_path / "full", label_scale=1.0)
    tier = tmp_path / "tier"
    tier.mkdir()
    for name, n in (("train", train), ("test", test), ("candidates_test", sets)):
        lines = (full / f"{name}.jsonl").read_text().splitlines()[:n]
        (tier / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return tier


def test_trained_reward_model_scores_and_policy_evaluator(tmp_path, pref_cache):
    """A Bradley-Terry run exports its cross-encoder; MADPO's data gets that model's scores (checked against the
    exported model on hand-tokenized pairs) and the policy evaluator equals a NumPy softmax policy over the
    initial model's hand-computed candidate scores."""
    from ranking_jax import sharding, tasks
    from ranking_jax.models import cross_encoder
    tier = policy_tier(tmp_path, train=120, test=40, sets=12)
    rm_config = load_config("preference", "runlocal")
    rm_config.data.update({"cache_dir": str(pref_cache), "manual_dir": str(tier)})
    rm_config.export_dir = "rm"
    run_config(rm_config, tmp_path / "rm")

    config = load_config("preference", "runlocal,madpo")
    config.data.update({"cache_dir": str(pref_cache), "manual_dir": str(tier),
                        "reward_model": str(tmp_path / "rm" / "rm")})
    mesh = sharding.make_mesh(config.mesh)
    (tmp_path / "madpo").mkdir()
    task = tasks.preference.preference(config, objectives.parse(config.loss),
                                       tasks.Context(tmp_path / "madpo", mesh, sharding.rules(config.sharding_rules)))
    batch = next(iter(task.train_data))
    train = [json.loads(line) for line in (tier / "train.jsonl").read_text().splitlines()]
    by_pair = {(r["prompt"], r["chosen"], r["rejected"]): r for r in train}
    rm = cross_encoder(pretrained=tmp_path / "rm" / "rm")
    expected = hand_scores(rm, train[:16], config)
    copy = cache_entry(config, "scored-preferences", tier) / "train.jsonl"
    scored = [json.loads(line) for line in copy.read_text().splitlines()]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in scored] == list(by_pair)
    np.testing.assert_allclose([[r["chosen_score"], r["rejected_score"]] for r in scored[:16]], expected,
                               rtol=1e-4, atol=1e-5)
    assert batch["chosen_score"].shape == (config.data.batch_size,)

    sets = [json.loads(line) for line in (tier / "candidates_test.jsonl").read_text().splitlines()]
    model = models.from_config(config.model, seed=config.seed)
    flat = [{"prompt": o["prompt"], "chosen": y, "rejected": y} for o in sets for y in o["responses"]]
    s = hand_scores(model, flat, config)[:, 0]
    expected_reward, greedy = [], []
    start = 0
    for o in sets:
        v, r = s[start:start + len(o["responses"])], np.array(o["rewards"])
        start += len(o["responses"])
        pi = np.exp(v - v.max()) / np.exp(v - v.max()).sum()
        expected_reward.append(pi @ r)
        greedy.append(r[np.argmax(v)])
    out = task.evaluators["policy"](model)
    assert out["expected_reward"] == pytest.approx(np.mean(expected_reward), rel=1e-5)
    assert out["greedy_reward"] == pytest.approx(np.mean(greedy), abs=1e-12)
    per_prompt = json.loads((tmp_path / "madpo" / "policy.run.per_query.json").read_text())
    assert len(per_prompt) == len(sets) == 12


def test_frozen_feature_policy_and_exported_mlp_reward_model(tmp_path, pref_cache):
    """``preference.py:features``: the batches carry [e(x), e(y), e(x) * e(y)] of all-MiniLM-L6-v2 sentence
    embeddings (checked against TextEncoder + NumPy), and an MLP reward model exported as params.npz scores
    MADPO's pairs exactly as the reloaded MLP does on those features."""
    from ranking_jax import assets
    from ranking_jax.encode import TextEncoder
    tier = policy_tier(tmp_path, train=60, test=20, sets=6)
    rm_config = load_config("preference", "runlocal,features")
    rm_config.data.update({"cache_dir": str(pref_cache), "manual_dir": str(tier)})
    rm_config.export_dir = "rm"
    run_config(rm_config, tmp_path / "rm")
    assert (tmp_path / "rm" / "rm" / "params.npz").exists()

    config = load_config("preference", "runlocal,madpo,features")
    config.data.update({"cache_dir": str(pref_cache), "manual_dir": str(tier),
                        "reward_model": str(tmp_path / "rm" / "rm")})
    summary = run_config(config, tmp_path / "madpo")
    assert set(summary["eval_after"]) >= {"policy/expected_reward", "preference/accuracy"}

    train = [json.loads(line) for line in (tier / "train.jsonl").read_text().splitlines()]
    encoder = TextEncoder(assets.minilm_path(), pooling="mean", normalize=True, max_length=128)
    e = {t: v for t, v in zip(*(lambda ts: (ts, encoder.encode(ts)))(
        sorted({r[k] for r in train for k in ("prompt", "chosen", "rejected")})))}
    feats = np.stack([np.stack([np.concatenate([e[r["prompt"]], e[r[s]], e[r["prompt"]] * e[r[s]]])
                                for s in ("chosen", "rejected")]) for r in train])
    from ranking_jax.tasks.distillation import load_exported
    from ranking_jax.tasks.rewards import sentence_features
    np.testing.assert_allclose(sentence_features(config, train), feats, atol=1e-6)
    rm, family = load_exported(tmp_path / "rm" / "rm")
    assert family == rm_config.model.name
    expected = np.asarray(rm({"features": feats}), np.float64)
    copy = cache_entry(config, "scored-preferences", tier) / "train.jsonl"
    scored = [json.loads(line) for line in copy.read_text().splitlines()]
    np.testing.assert_allclose([[r["chosen_score"], r["rejected_score"]] for r in scored], expected,
                               rtol=1e-5, atol=1e-6)
    assert all(np.isfinite(r["loss"]) for r in rows_of(tmp_path / "madpo") if r["split"] == "train")
