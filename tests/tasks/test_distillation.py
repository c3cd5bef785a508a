"""ranking_jax.tasks.distillation: a student trains on Margin-MSE triples scored by the mean of exported
cross-encoder teachers (``teacher.tsv`` checked against the teachers' own forward passes on hand-encoded pairs) or
of pretrained bi-encoders (checked against sentence-transformers-equivalent encoding), raw or z-scored; the
ensemble's re-ranking is the ``teacher`` baseline."""

import numpy as np
import pytest

from helpers import cache_entry, check_two_step_run, load_config, run_config


def _student(tmp_path, teacher: str, **data):
    """A 2-step bi-encoder student config on ChatterBot distilled with Margin-MSE from ``teacher``."""
    config = load_config("bi_encoder", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.data.update({"teacher": teacher, "teacher_per_query": 1, "list_size": 2, **data})
    config.evals.retrieval = False  # re-ranking is enough here; retrieval encodes the whole corpus
    config.loss = "losses.margin_mse_loss"
    return config


def _texts(config) -> dict:
    """``{id: text}`` of the collection's queries and documents, as the BEIR builder joins title and text."""
    import json
    source = cache_entry(config, "chatterbot-beir")
    return {r["_id"]: f"{r['title']} {r['text']}" if r.get("title") else r["text"]
            for name in ("corpus", "queries") for r in map(json.loads, open(source / f"{name}.jsonl"))}


def test_distillation_from_the_mean_of_exported_teachers(tmp_path):
    """``data.teacher``: a student trains on (positive, BM25 negative) triples scored by the mean of two exported
    cross-encoders (the paper's mean ensemble); ``teacher.tsv`` holds, per training query, a judged positive, an
    unjudged negative and the mean of the teachers' own forward passes on those encoded pairs."""
    from ranking_jax import data
    from ranking_jax.models import cross_encoder
    teachers = []
    for seed in (0, 1):
        teachers.append(cross_encoder(pretrained="minilm", num_hidden_layers=1, seed=seed))
        teachers[-1].head.kernel.set_value(teachers[-1].head.kernel[...] * 1000)  # margins well above 1e-6
        teachers[-1].save_pretrained(tmp_path / f"t{seed}", source="minilm")
    config = _student(tmp_path, f"{tmp_path}/t0,{tmp_path}/t1")
    summary = run_config(config, tmp_path / "run")
    check_two_step_run(tmp_path / "run", summary)

    source = cache_entry(config, "chatterbot-beir")
    text = _texts(config)
    qrels = {}
    for line in (source / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, rel = line.split("\t")
        qrels.setdefault(q, set()).update([d] if int(rel) > 0 else [])
    rows = list(data.read_teacher_triples(tmp_path / "run" / "teacher.tsv"))
    assert len({q for *_, q, _, _ in rows}) == len(rows) > 100  # one triple per training query
    assert all(p in qrels[q] and n not in qrels[q] for *_, q, p, n in rows)
    tok = data.TextTokenizer(query_length=config.data.query_length, doc_length=config.data.doc_length)
    sample = rows[:24]
    docs = [text[p] for *_, p, _ in sample] + [text[n] for *_, n in sample]
    # a document contributes at most doc_length word pieces to a pair, as in every text pipeline
    enc = tok.encode_pairs([text[q] for *_, q, _, _ in sample] * 2,
                           [ids[:config.data.doc_length] for ids in tok.tokens(docs)])
    batch = {"pair_ids": enc["ids"][:, None], "pair_mask": enc["mask"][:, None],
             "pair_type_ids": enc["type_ids"][:, None]}
    expected = np.mean([np.asarray(t(batch, deterministic=True))[:, 0] for t in teachers], 0).reshape(2, -1).T
    np.testing.assert_allclose([r[1:3] for r in sample], expected, rtol=1e-4, atol=1e-4)
    assert np.std([r[1] - r[2] for r in rows]) > 0.1  # real, varying margins
    config.data.teacher = str(tmp_path / "no_teacher")
    with pytest.raises(FileNotFoundError, match=r"config.data.teacher: .*no_teacher is neither an exported model"):
        run_config(config, tmp_path / "run2")


def test_pretrained_bi_encoder_teachers_z_scored_and_their_baseline(tmp_path):
    """``data.teacher=minilm``: all-MiniLM-L6-v2 scores the triples by cosine similarity, equal to
    ``TextEncoder`` (sentence-transformers' encode, tested against its fixtures) on the texts; the ``teacher``
    baseline re-ranks the evaluation candidates with the same scores, equal to ir-measures on its run file. With
    ``teacher_norm=zscore`` an ensemble of the same teacher twice gives (score - mean) / std of its training
    scores."""
    import ir_measures

    from ranking_jax import TextEncoder, data
    from ranking_jax.data import formats
    config = _student(tmp_path, "minilm")
    summary = run_config(config, tmp_path / "raw")
    check_two_step_run(tmp_path / "raw", summary)
    source = cache_entry(config, "chatterbot-beir")
    text = _texts(config)
    rows = list(data.read_teacher_triples(tmp_path / "raw" / "teacher.tsv"))
    encoder = TextEncoder("minilm")
    sample = rows[:16]
    q = encoder.encode([text[r[3]] for r in sample], normalize_embeddings=True)
    for column, doc in ((1, 4), (2, 5)):
        e = encoder.encode([text[r[doc]] for r in sample], normalize_embeddings=True)
        np.testing.assert_allclose([r[column] for r in sample], np.sum(q * e, -1), atol=2e-5)
    run = formats.read_run(tmp_path / "raw" / "teacher.run")
    qid, docs = next(iter(run.items()))
    e = encoder.encode([text[d] for d in docs], normalize_embeddings=True)
    np.testing.assert_allclose(list(docs.values()), e @ encoder.encode(text[qid], normalize_embeddings=True),
                               atol=2e-5)
    qrels = {k: v for k, v in formats.read_qrels(source / "qrels" / "test.tsv").items() if k in run}
    measure = ir_measures.parse_measure("nDCG@10")
    assert summary["baselines"]["teacher"]["nDCG@10"] == pytest.approx(
        ir_measures.calc_aggregate([measure], qrels, run)[measure], abs=1e-6)

    config.data.update({"teacher": "minilm,minilm", "teacher_norm": "zscore"})
    run_config(config, tmp_path / "z")
    raw = np.array([r[1:3] for r in rows], np.float64)
    z = np.array([r[1:3] for r in data.read_teacher_triples(tmp_path / "z" / "teacher.tsv")])
    np.testing.assert_allclose(z, (raw - raw.mean()) / raw.std(), atol=1e-4)
    config.data.teacher_norm = "rank"
    with pytest.raises(ValueError, match=r"teacher_norm='rank': one of \('none', 'zscore'\)"):
        run_config(config, tmp_path / "bad")


def test_first_stage_as_a_teacher_reproduces_its_own_order(tmp_path):
    """``data.teacher=first_stage`` (a hybrid ensemble's lexical member) scores pairs by the first stage: its
    ``teacher`` run and baseline equal the ``first_stage`` ones."""
    from ranking_jax import data
    from ranking_jax.data import formats
    config = _student(tmp_path, "first_stage", eval_depth=50)
    summary = run_config(config, tmp_path / "run")
    assert summary["baselines"]["teacher"] == summary["baselines"]["first_stage"]
    teacher, first = (formats.read_run(tmp_path / "run" / f"{k}.run") for k in ("teacher", "first_stage"))
    assert teacher.keys() == first.keys()
    assert all(teacher[q][d] == pytest.approx(first[q][d], rel=1e-6) for q in first for d in first[q])
    rows = list(data.read_teacher_triples(tmp_path / "run" / "teacher.tsv"))
    assert len(rows) > 100 and np.std([r[2] for r in rows]) > 0
