"""Raw file formats: malformed lines raise errors naming file:line and what was expected; TREC runs
round-trip; ids map to rows; counted skips."""

import functools
import logging

import numpy as np
import pytest

from ranking_jax import data


def _file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _assert_malformed(tmp_path, name, text, read, match):
    """Reading ``text`` as file ``name`` with ``read`` raises a DataFormatError matching ``match``."""
    with pytest.raises(data.DataFormatError, match=match):
        list(read(_file(tmp_path, name, text)))


@pytest.mark.parametrize("text, line, expected", [
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, "3 tab-separated columns"),
    ("q1\td1\t1\nq1\td2\thigh\n", 2, "an integer relevance"),
    ("q1 0 d1 1\nq1 0 d2 1 extra\n", 2, "3 tab-separated columns"),
])
def test_qrels_malformed(tmp_path, text, line, expected):
    _assert_malformed(tmp_path, "qrels.tsv", text, data.read_qrels, rf"qrels.tsv:{line}: expected {expected}")


def test_qrels_formats(tmp_path):
    beir = _file(tmp_path, "beir.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n\nq2\td3\t0\n")
    trec = _file(tmp_path, "trec.txt", "q1 0 d1 2\nq2 Q0 d3 0\n")
    expected = [("q1", "d1", 2), ("q2", "d3", 0)]
    assert [row[1:] for row in data.read_qrels(beir)] == expected
    assert [row[1:] for row in data.read_qrels(trec)] == expected
    assert [row[0] for row in data.read_qrels(beir)] == [2, 4]  # true line numbers (blank line skipped)


def test_jsonl_malformed(tmp_path):
    _assert_malformed(tmp_path, "corpus.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"\n',
                      data.read_jsonl, r"corpus.jsonl:2: expected one JSON object per line")
    _assert_malformed(tmp_path, "queries.jsonl", '{"_id": "1", "text": "a"}\n["x"]\n', data.read_jsonl,
                      r"queries.jsonl:2: expected a JSON object")
    _assert_malformed(tmp_path, "q2.jsonl", '{"text": "a"}\n', data.read_jsonl,
                      r"q2.jsonl:1: expected the key\(s\) \['_id'\]")


def test_run_round_trip_and_errors(tmp_path):
    path = data.write_run(tmp_path / "run.trec", [("q1", ["b", "a", "c"], [1.0, 3.0, 1.0]), ("q2", ["x"], [0.5])])
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 3.0 ranking_jax"
    assert [line.split()[2] for line in lines[:3]] == ["a", "c", "b"]  # ties by docid descending (trec_eval)
    assert data.read_run(path) == {"q1": [("a", 3.0), ("c", 1.0), ("b", 1.0)], "q2": [("x", 0.5)]}
    _assert_malformed(tmp_path, "bad.trec", "q1 Q0 a 1 3.0 tag\nq1 Q0 b two 2.0 tag\n", data.read_run,
                      r"bad.trec:2: expected an integer rank")


def test_tsv_and_svmlight_malformed(tmp_path):
    _assert_malformed(tmp_path, "triples.tsv", "1.5\t0.5\tq\tp\tn\n1.5\tx\tq\tp\tn\n", data.read_teacher_triples,
                      r"triples.tsv:2: expected columns of types \(pos_score: float")
    svm = functools.partial(data.read_svmlight, num_features=3)
    _assert_malformed(tmp_path, "train.txt", "1 qid:3 1:0.5 3:2\n2 3:1\n", svm,
                      r"train.txt:2: expected 'label qid:Q index:value")
    _assert_malformed(tmp_path, "t2.txt", "1 qid:3 1:0.5 4:2\n", svm, r"t2.txt:1: expected .*1 <= index <= 3")
    _assert_malformed(tmp_path, "t3.txt", "1 qid:3 0:0.5\n", svm, r"t3.txt:1: expected .*1-based")
    (n, label, qid, x), = data.read_svmlight(_file(tmp_path, "ok.txt", "2 qid:7 1:0.5 3:-2 # doc\n"), num_features=3)
    assert (n, label, qid) == (1, 2.0, "7") and x.tolist() == [0.5, 0.0, -2.0]


def test_id_index():
    compact = data.IdIndex(str(i) for i in range(5))
    assert compact["3"] == 3 and "5" not in compact and "03" not in compact and len(compact) == 5
    mapped = data.IdIndex(["a", "b", "c"])
    assert mapped["c"] == 2 and mapped.get("z") is None
    mixed = data.IdIndex(["0", "1", "x", "3"])
    assert mixed["3"] == 3 and mixed["x"] == 2
    with pytest.raises(ValueError, match="duplicate id '0'"):
        data.IdIndex(["0", "1", "0"])


def test_skipped_counts_are_logged(caplog):
    skipped = data.Skipped("source.tsv")
    for i in range(4):
        skipped.add("unknown doc", f"line {i}")
    with caplog.at_level(logging.WARNING):
        assert skipped.report() == {"unknown doc": 4}
    assert "source.tsv: skipped 4 rows: unknown doc (e.g. line 0; line 1; line 2)" in caplog.text


def test_idx_reader(tmp_path):
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    (tmp_path / "x.idx").write_bytes(raw)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.idx"), np.arange(6).reshape(2, 3))
    (tmp_path / "bad.idx").write_bytes(raw[:-1])
    with pytest.raises(data.DataFormatError, match="expected 6 bytes of data"):
        data.read_idx(tmp_path / "bad.idx")
