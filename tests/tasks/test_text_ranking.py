"""ranking_jax.tasks.text_ranking: a zero-shot collection (``evals.zero_shot``) is re-ranked from its own first
stage and evaluated like trec_eval (ir-measures on the written run file and that collection's qrels); the first
stage's own ranking, a random and the best possible re-order of its candidates are the baseline rows, and
``data.first_stage_weight`` adds its scores to the model's."""

import pytest

from helpers import load_config, run_config


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


def test_first_stage_baseline_row_and_first_stage_prior(tmp_path):
    """The summary's ``baselines`` (first stage, random, oracle) equal ir-measures on their run files; with a
    first-stage weight that dwarfs the untrained head, re-ranking reproduces the first stage's ranking (0 steps); a
    bi-encoder, which re-ranks from embeddings, refuses the option."""
    import ir_measures

    from helpers import cache_entry
    from ranking_jax.data import formats
    config = load_config("cross_encoder", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.data.first_stage_weight = 1e4
    config.train.num_steps = 0
    config.optimizer.schedule = "constant"  # a linear decay needs steps to decay over
    summary = run_config(config, tmp_path / "run")
    first = formats.read_run(tmp_path / "run" / "first_stage.run")
    qrels = {q: d for q, d in formats.read_qrels(cache_entry(config, "chatterbot-beir") / "qrels" / "test.tsv").items()
             if q in first}
    assert len(first) == config.data.max_eval_queries
    measure = ir_measures.parse_measure("nDCG@10")
    baseline = summary["baselines"]["first_stage"]["nDCG@10"]
    assert baseline == pytest.approx(ir_measures.calc_aggregate([measure], qrels, first)[measure], abs=1e-6)
    assert summary["eval_after"]["rerank/nDCG@10"] == pytest.approx(baseline, abs=1e-6)
    # the random and best-possible re-orders of the same candidates, each equal to ir-measures on its run file
    for kind in ("random", "oracle"):
        run = formats.read_run(tmp_path / "run" / f"{kind}.run")
        assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in first.items()}
        assert summary["baselines"][kind]["nDCG@10"] == pytest.approx(
            ir_measures.calc_aggregate([measure], qrels, run)[measure], abs=1e-6)
    # the oracle by hand: each query's candidates sorted by judged relevance is its best nDCG@10 over them
    best = {q: {d: float(qrels[q].get(d, 0)) for d in docs} for q, docs in first.items()}
    ideal = ir_measures.calc_aggregate([measure], qrels, best)[measure]
    assert summary["baselines"]["oracle"]["nDCG@10"] == pytest.approx(ideal, abs=1e-6) and ideal > baseline
    assert summary["baselines"]["random"]["nDCG@10"] < ideal
    be = load_config("bi_encoder", "runlocal")
    be.data.cache_dir = config.data.cache_dir
    be.data.first_stage_weight = 1.0
    with pytest.raises(ValueError, match="first_stage_weight: a bi-encoder re-ranks from embeddings"):
        run_config(be, tmp_path / "be")
