"""The metric_learning task end to end (2 steps of its runlocal config) and its objective, checked against
independent computations: NumPy Recall@k from embeddings of images read straight from scikit-learn and the TCM
regularizer by hand (L = L_base + L_TCM). Its refusal of TRAM (which needs list scores):
tests/faults/test_bad_config.py."""

import numpy as np
import pytest

from helpers import cache_entry, check_train_rows, load_config, run_config
from ranking_jax import data, losses, metrics, models, objectives


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
