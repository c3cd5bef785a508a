"""ranking_jax.metrics.trec against ir-measures over pytrec_eval (trec_eval semantics, ties included) on random
TREC qrels and runs (tests/helpers.py); measure names and their errors."""

import ir_measures
import numpy as np
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


@pytest.mark.parametrize("seed, cells", [(0, 2 ** 21), (1, 2 ** 21), (2, 2 ** 21), (0, 64), (1, 200)])
def test_evaluate_equals_ir_measures(seed, cells):
    """Also with a budget of ``cells`` padded entries so small that every query (64) or a few (200) form a
    group of their own."""
    qrels, run = random_trec_case(seed)
    ties = sum(len(v) - len(set(v.values())) for v in run.values())
    assert ties > 20
    got = trec.evaluate_per_query(qrels, run, MEASURES + ["RR@3", "RR@10"], cells=cells)
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


def _long_lists(seed, lengths):
    """Queries whose runs retrieve ``lengths`` documents (tied scores), judged on a random part of them plus a
    few unretrieved documents."""
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q, n in enumerate(lengths):
        docs = [f"d{i}" for i in range(n)]
        run[f"q{q}"] = {d: float(np.round(rng.normal(), 1)) for d in docs}
        judged = list(rng.choice(docs, size=min(n, 7), replace=False)) + [f"u{i}" for i in range(q % 3)]
        qrels[f"q{q}"] = {d: int(r) for d, r in zip(judged, rng.choice([0, 1, 2], size=len(judged)))}
    return qrels, run


@pytest.mark.parametrize("cells", [2 ** 21, 256, 1])
def test_lists_of_many_lengths_evaluate_in_bounded_groups(cells):
    """Lists from 1 to 3,000 documents fall in several width buckets; any group budget gives ir-measures'
    values."""
    lengths = [1, 5, 63, 64, 65, 100, 129, 300, 301, 700, 3000, 2, 64, 80]
    qrels, run = _long_lists(0, lengths)
    names = ["nDCG", "nDCG@10", "AP", "P@5", "R@100", "RR"]
    got, want = trec.evaluate_per_query(qrels, run, names, cells=cells), _oracle(qrels, run, names)
    for qid in qrels:
        for name in names:
            assert got[qid][name] == pytest.approx(want[qid][name], abs=1e-6), (qid, name)


def test_groups_cover_each_query_once_within_the_budget():
    lengths = [1, 5, 63, 64, 65, 100, 129, 300, 301, 700, 3000, 2, 64, 80] * 20
    for cells in (1, 64, 1000, 2 ** 12, 2 ** 21):
        chunks = trec._chunks(lengths, cells)
        assert sorted(p for positions, _, _ in chunks for p in positions) == list(range(len(lengths)))
        for positions, rows, width in chunks:
            assert len(positions) <= rows and rows & (rows - 1) == 0
            assert all(lengths[p] <= width <= max(64, 1.25 * lengths[p]) for p in positions)
            assert rows * width <= cells or rows == 1
    assert [trec._bucket(n) for n in (1, 64, 65, 80, 81, 128, 129, 500_000)] == [64, 64, 80, 80, 96, 128, 160, 524_288]
