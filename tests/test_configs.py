"""Every experiment config runs 2 steps end to end (data, model, loss, optimizer, evaluators, checkpoint)."""

import pathlib

import numpy as np
import pytest

from helpers import cache_entry, load_config, metric_rows, run_config, write_svmlight


def _check_run(workdir: pathlib.Path, summary: dict, measures=("nDCG@10",)):
    train_rows = metric_rows(workdir, "train")
    assert [r["step"] for r in train_rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in train_rows)
    assert summary["final_step"] == 2
    for name, value in summary["eval_after"].items():
        assert 0.0 <= value <= 1.0, (name, value)
    assert any(k.endswith(measures[0]) for k in summary["eval_after"])
    assert (workdir / "checkpoints" / "2").is_dir()
    assert (workdir / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["cross_encoder", "bi_encoder", "colbert", "tk", "prett"])
def test_text_config_two_steps(name, tmp_path):
    config = load_config(name, "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    summary = run_config(config, tmp_path / "run")
    _check_run(tmp_path / "run", summary)
    assert (tmp_path / "run" / "rerank.run").stat().st_size > 0
    if name == "bi_encoder":
        assert "retrieval/nDCG@10" in summary["eval_after"]


def test_ltr_config_two_steps(tmp_path):
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor"))
    config.data.cache_dir = str(tmp_path / "cache")
    summary = run_config(config, tmp_path / "run")
    _check_run(tmp_path / "run", summary, measures=("nDCG@1",))


@pytest.mark.parametrize("optimizer", ["sam", "tram"])
def test_optimizer_swap_is_one_line(optimizer, tmp_path):
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor"))
    config.data.cache_dir = str(tmp_path / "cache")
    config.optimizer.name = optimizer
    summary = run_config(config, tmp_path / "run")
    _check_run(tmp_path / "run", summary, measures=("nDCG@1",))


def test_quickstart_config_resolves():
    config = load_config("quickstart")
    assert sorted(config.runs) == ["bi_encoder", "cross_encoder"]
    assert config.runs.cross_encoder.data.collection == "chatterbot"
    assert config.runs.bi_encoder.optimizer.total_steps == config.runs.bi_encoder.train.num_steps


def test_zero_shot_collection_is_evaluated_like_trec_eval(tmp_path, shared_dir):
    """``evals.zero_shot``: the trained model re-ranks another collection's first stage; its metrics equal
    ir-measures (trec_eval) on the run file written for it and that collection's own qrels."""
    import ir_measures

    from ranking_jax.data import formats
    cranfield = shared_dir / "data" / "cranfield"
    config = load_config("cross_encoder", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.evals.zero_shot = str(cranfield)
    summary = run_config(config, tmp_path / "run")
    run = formats.read_run(tmp_path / "run" / "cranfield_rerank.run")
    assert len(run) == config.data.max_eval_queries
    assert all(len(docs) <= config.data.eval_depth for docs in run.values())
    qrels = {}
    for line in (cranfield / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, rel = line.split("\t")
        if q in run:
            qrels.setdefault(q, {})[d] = int(rel)
    expected = ir_measures.calc_aggregate([ir_measures.parse_measure("nDCG@10")], qrels, run)
    assert summary["eval_after"]["cranfield/rerank/nDCG@10"] == pytest.approx(
        expected[ir_measures.parse_measure("nDCG@10")], abs=1e-5)
    assert "rerank/nDCG@10" in summary["eval_after"]  # the training collection's own evaluation is kept


def test_distillation_from_the_mean_of_exported_teachers(tmp_path):
    """``data.teacher``: a student trains on (positive, BM25 negative) triples scored by the mean of two exported
    cross-encoders (the paper's mean ensemble); ``teacher.tsv`` holds, per training query, a judged positive, an
    unjudged negative and the mean of the teachers' own forward passes on those encoded pairs."""
    import json

    from ranking_jax import data
    from ranking_jax.models import cross_encoder
    teachers = []
    for seed in (0, 1):
        teachers.append(cross_encoder(pretrained="minilm", num_hidden_layers=1, seed=seed))
        teachers[-1].head.kernel.set_value(teachers[-1].head.kernel[...] * 1000)  # margins well above 1e-6
        teachers[-1].save_pretrained(tmp_path / f"t{seed}", source="minilm")
    config = load_config("bi_encoder", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.data.update({"teacher": f"{tmp_path}/t0,{tmp_path}/t1", "teacher_per_query": 1, "list_size": 2})
    config.evals.retrieval = False  # re-ranking is enough here; retrieval encodes the whole corpus
    config.loss = "losses.margin_mse_loss"
    summary = run_config(config, tmp_path / "run")
    _check_run(tmp_path / "run", summary)

    source = cache_entry(config, "chatterbot-beir")
    text = {r["_id"]: f"{r['title']} {r['text']}" if r.get("title") else r["text"]
            for name in ("corpus", "queries") for r in map(json.loads, open(source / f"{name}.jsonl"))}
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
    with pytest.raises(FileNotFoundError, match=r"config.data.teacher: .*no_teacher holds no exported model"):
        run_config(config, tmp_path / "run2")


def test_config_json_replays_the_run(tmp_path):
    """The task resolves its fields (the feature count) before ``config.json`` is written, and ``--config
    WORKDIR/config.json`` reruns the same run: the same metrics at every step. Rerunning the first workdir with a
    changed config is refused unless told."""
    import json
    import subprocess
    import sys

    from helpers import ROOT
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor", features=7))
    config.data.cache_dir = str(tmp_path / "cache")
    first = run_config(config, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"]["num_features"] == 7 and saved["loss"] == config.loss
    cmd = [sys.executable, "-m", "ranking_jax.main", f"--config={tmp_path / 'a' / 'config.json'}"]
    replay = subprocess.run(cmd + [f"--workdir={tmp_path / 'b'}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["eval_after"] == first["eval_after"]
    assert [r["loss"] for r in metric_rows(tmp_path / "b", "train")] == \
        [r["loss"] for r in metric_rows(tmp_path / "a", "train")]
    assert (tmp_path / "b" / "config.json").read_text() == (tmp_path / "a" / "config.json").read_text()
    changed = subprocess.run(cmd + [f"--workdir={tmp_path / 'a'}", "--config.optimizer.learning_rate=0.5"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert changed.returncode != 0 and "optimizer.learning_rate: 0.001 -> 0.5" in changed.stderr
    assert "--allow_config_change" in changed.stderr
