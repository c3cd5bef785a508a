"""The metric_learning and preference tasks end to end (2 steps of their runlocal configs), checked against
independent computations: NumPy Recall@k from embeddings of images read straight from scikit-learn, the TCM
regularizer by hand, preference accuracy / margin / Bradley-Terry loss from hand-tokenized pairs, and the
DPO loss at step 0 (policy == reference) = log 2."""

import json
import math
import pathlib

import numpy as np
import pytest

from helpers import cache_entry, load_config, run_config
from helpers import metric_rows as rows_of
from ranking_jax import data, losses, metrics, models, objectives
from ranking_jax.models import mlp_embedder


def check_train_rows(workdir: pathlib.Path) -> list[dict]:
    train = [r for r in rows_of(workdir) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in train)
    assert (workdir / "checkpoints" / "2").is_dir()
    return train


def np_recall_at_k(emb: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out: a hit if one of the k most cosine-similar other items shares the label."""
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hits = (labels[top] == labels[:, None]).any(axis=1)
    answerable = np.array([(labels == c).sum() > 1 for c in labels])
    return float(hits[answerable].mean())


def np_tcm(emb: np.ndarray, labels: np.ndarray, m_pos=0.9, m_neg=0.5) -> float:
    """Zhang et al. 2024 TCM over all ordered in-batch pairs i != j (cosine similarities)."""
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = x @ x.T
    off = ~np.eye(len(labels), dtype=bool)
    same = labels[:, None] == labels[None, :]
    pos = s[off & same & (s <= m_pos)]
    neg = s[off & ~same & (s >= m_neg)]
    return float((np.mean(m_pos - pos) if pos.size else 0.0) + (np.mean(neg - m_neg) if neg.size else 0.0))


# ------------------------------------------------------------------------------------------ pieces
def test_mlp_embedder_matches_numpy_forward():
    model = mlp_embedder(num_features=6, hidden=(5,), dim=3, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    out = np.asarray(model({"images": x}))
    w1, b1 = np.asarray(model.layers[0].kernel[...]), np.asarray(model.layers[0].bias[...])
    g, beta = np.asarray(model.norms[0].scale[...]), np.asarray(model.norms[0].bias[...])
    w2, b2 = np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])
    h = x @ w1 + b1
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6) * g + beta
    e = np.maximum(h, 0) @ w2 + b2
    np.testing.assert_allclose(out, e / np.linalg.norm(e, axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert model.layers[0].kernel.get_metadata()["out_sharding"] == ("embed", "mlp")
    assert model.out.kernel.get_metadata()["out_sharding"] == ("mlp", "embed")


def test_tcm_is_a_term_of_the_objective():
    """``losses.multi_similarity_loss + losses.tcm_regularizer``: L = L_base + L_TCM (Zhang et al. 2024), the TCM
    part equal to a NumPy TCM over the valid rows; each term is reported beside the total."""
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(8, 4)).astype(np.float32)
    batch = {"class_labels": np.array([0, 0, 1, 1, 2, 2, 0, -1], np.int32), "mask": np.arange(8) < 7}
    plain, _ = objectives.parse("losses.multi_similarity_loss")({"embeddings": emb}, batch)
    total, terms = objectives.parse("losses.multi_similarity_loss + losses.tcm_regularizer(m_pos=0.9)")(
        {"embeddings": emb}, batch)
    expected_base = losses.multi_similarity_loss(emb, batch["class_labels"], where=batch["mask"])
    np.testing.assert_allclose(plain, expected_base, rtol=1e-6)
    np.testing.assert_allclose(total - plain, np_tcm(emb[:7], batch["class_labels"][:7]), rtol=1e-5)
    np.testing.assert_allclose(terms["tcm_regularizer"], total - plain, rtol=1e-5)


def test_preference_pairs_is_cls_prompt_sep_response_sep(tmp_path):
    texts = [("what is a cat?", "a small animal", "a kind of bread"), ("hello", "hi there", "goodbye now"),
             ("tell me a story", "once upon a time", "no")]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.jsonl").write_text("".join(
        json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in texts))
    src = data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out",
                       manual_dir=tmp_path / "src").as_data_source()["train"]
    ref = np.array([[1.5, -2.0], [0.25, 0.5], [3.0, 4.0]], np.float32)
    pipe = data.preference_pipeline(src, batch_size=4, train=False, prompt_length=8, response_length=6, pairs=True,
                                    extra={"reference_scores": ref}, shard=(0, 1))
    b = pipe[0]
    assert "prompt_ids" not in b and b["pair_ids"].shape == (4, 2, 13)
    tok = data.TextTokenizer(query_length=8, doc_length=6)
    expected = tok.encode_pairs([p for p, _, _ in texts for _ in (0, 1)], [x for _, c, r in texts for x in (c, r)])
    for name in ("ids", "mask", "type_ids"):
        np.testing.assert_array_equal(b[f"pair_{name}"][:3].reshape(6, -1), expected[name])
        assert not b[f"pair_{name}"][3].any()  # padding row
    np.testing.assert_array_equal(b["reference_scores"], np.concatenate([ref, np.zeros((1, 2))]))
    with pytest.raises(ValueError, match="one entry per row"):
        data.preference_pipeline(src, batch_size=4, train=False, extra={"reference_scores": ref[:2]}, shard=(0, 1))


# ---------------------------------------------------------------------------------- metric learning
def test_metric_learning_runlocal(tmp_path):
    from sklearn.datasets import load_digits

    config = load_config("metric_learning", "runlocal,tcm")
    config.data.cache_dir = str(tmp_path / "cache")
    summary = run_config(config, tmp_path / "run")
    train = check_train_rows(tmp_path / "run")

    # Evaluation before training: NumPy Recall@k of the initial model's embeddings of the held-out digits 5-9.
    digits = load_digits()
    test_rows = np.flatnonzero(digits.target >= 5)
    keep = np.sort(np.random.default_rng(config.seed).choice(len(test_rows), config.data.max_eval_images,
                                                             replace=False))
    images = digits.images[test_rows[keep]].reshape(len(keep), -1).astype(np.float32) / 16.0
    labels = digits.target[test_rows[keep]]
    model = models.from_config(config.model, seed=config.seed)
    emb0 = np.asarray(model({"images": images}))
    before = summary["eval_before"]
    for k in (1, 2, 4, 8):
        assert before[f"embedding/R@{k}"] == pytest.approx(np_recall_at_k(emb0, labels, k), abs=1e-6)

    # After training: the evaluator's numbers from its saved embeddings.
    saved = np.load(tmp_path / "run" / "embeddings.npz")
    np.testing.assert_array_equal(saved["class_labels"], labels)
    np.testing.assert_allclose(np.linalg.norm(saved["embeddings"], axis=1), 1.0, rtol=1e-5)
    after = summary["eval_after"]
    for k in (1, 2, 4, 8):
        assert after[f"embedding/R@{k}"] == pytest.approx(np_recall_at_k(saved["embeddings"], labels, k), abs=1e-6)
    assert after["embedding/opis"] == pytest.approx(float(metrics.opis(saved["embeddings"], labels)), rel=1e-5)
    assert after["embedding/eps_opis"] == pytest.approx(float(metrics.eps_opis(saved["embeddings"], labels)),
                                                        rel=1e-5)

    # Step 1's loss: multi-similarity + TCM (by hand) of the initial model on the first m-per-class batch.
    src = data.prepare(data.ImageClasses, config="digits",
                       data_dir=cache_entry(config, "image_classes")).as_data_source()
    first = data.image_pipeline(src["train"], batch_size=config.data.batch_size, train=True, seed=config.seed,
                                max_value=16, classes_per_batch=config.data.classes_per_batch)[0]
    assert len(np.unique(first["class_labels"])) == config.data.classes_per_batch
    e = np.asarray(model({"images": first["images"]}))
    expected = float(losses.multi_similarity_loss(e, first["class_labels"])) + np_tcm(e, first["class_labels"])
    assert train[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_metric_learning_refuses_tram(tmp_path):
    config = load_config("metric_learning", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.optimizer.name = "tram"
    with pytest.raises(ValueError, match="tram.*list scores.*mlp_embedder"):
        run_config(config, tmp_path / "run")


# --------------------------------------------------------------------------------------- preference
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


# ------------------------------------------------------------- policy data, trained reward model, policy evaluator
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
