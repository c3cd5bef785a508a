"""ranking_jax.metrics.trec against ir-measures over pytrec_eval (trec_eval semantics, ties included) on random
TREC qrels and runs (tests/helpers.py); measure names and their errors."""

import ir_measures
import pytest

from helpers import random_trec_case
from ranking_jax.data import formats
from ranking_jax.metrics import trec

MEASURES = ["nDCG", "nDCG@5", "nDCG@10", "AP", "AP@5", "P@5", "P@10", "R@5", "R@20", "RR", "P(rel=2)@5",
            "AP(rel=2)", "RR(rel=2)"]


def _oracle(qrels, run, names):
    """Per-query values from ir-measures (pytrec_eval provider); RR@k = RR if RR >= 1/k else 0 (trec order)."""
    measures = [ir_measures.parse_measure(n) for n in names]
    out = {q: {} for q in qrels}
    for m in ir_measures.iter_calc(measures, qrels, run):
        out[m.query_id][str(m.measure)] = m.value
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_equals_ir_measures(seed):
    qrels, run = random_trec_case(seed)
    ties = sum(len(v) - len(set(v.values())) for v in run.values())
    assert ties > 20
    got = trec.evaluate_per_query(qrels, run, MEASURES + ["RR@3", "RR@10"])
    want = _oracle(qrels, run, MEASURES)
    assert sorted(got) == sorted(want) == sorted(qrels)
    for qid in qrels:
        for name in MEASURES:
            assert got[qid][name] == pytest.approx(want[qid][name], abs=1e-6), (qid, name)
        for k in (3, 10):
            rr = want[qid]["RR"]
            assert got[qid][f"RR@{k}"] == pytest.approx(rr if rr >= 1 / k - 1e-9 else 0.0, abs=1e-6)
    means = trec.evaluate(qrels, run, MEASURES)
    want_means = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in MEASURES], qrels, run)
    for m, v in want_means.items():
        assert means[str(m)] == pytest.approx(v, abs=1e-6)
    assert got["q12"]["AP"] == 0.0 and "q20" not in got


def test_ties_break_by_docno_descending():
    qrels = {"q": {"d5": 1}}
    run = {"q": {f"d{i}": 1.0 for i in range(1, 6)}}
    assert trec.evaluate(qrels, run, "RR RR@10")["RR"] == 1.0
    assert trec.evaluate({"q": {"d1": 1}}, run, "RR")["RR"] == pytest.approx(0.2)
    # ir-measures routes RR@k to its msmarco provider, which breaks ties by doc id ascending instead.
    msmarco = ir_measures.calc_aggregate([ir_measures.parse_measure("RR@10")], qrels, run)
    assert list(msmarco.values()) == [pytest.approx(0.2)]
    assert trec.evaluate(qrels, run, "RR@10")["RR@10"] == 1.0


def test_evaluation_order_is_the_run_file_order(tmp_path):
    """trec's ranking (kept private so that evaluation imports nothing from data) equals formats.ranked, which
    fixes the order of the run files; both are trec_eval's."""
    _, run = random_trec_case(3)
    for docs in run.values():
        assert trec._trec_order(docs) == formats.ranked(docs)
    assert formats.ranked({"d1": 1.0, "d10": 1.0, "D2": 1.0, "d2": 2.0, "x": -1.0}) == ["d2", "d10", "d1", "D2", "x"]


def test_rr_at_k_equals_ir_measures_without_ties():
    qrels, run = random_trec_case(5)
    run = {q: {d: s + 1e-3 * i for i, (d, s) in enumerate(docs.items())} for q, docs in run.items()}
    names = ["RR@3", "RR@10", "RR(rel=2)@5"]
    got = trec.evaluate(qrels, run, names)
    want = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in names], qrels, run)
    for m, v in want.items():
        assert got[str(m)] == pytest.approx(v, abs=1e-6)


@pytest.mark.parametrize("spec, message", [("nDCG(rel=2)@5", "unsupported parameter"), ("P", "needs a cut-off"),
                                           ("Foo@3", "unknown measure"), ("P@0", ">= 1"), ("", "no measures")])
def test_bad_measures(spec, message):
    with pytest.raises(ValueError, match=message):
        trec.parse_measures(spec)


def test_measure_names_are_canonical():
    assert [str(m) for m in trec.parse_measures("NDCG@10, MRR@10 MAP Precision@5 Recall@100 P(rel=2)@5")] == [
        "nDCG@10", "RR@10", "AP", "P@5", "R@100", "P(rel=2)@5"]
