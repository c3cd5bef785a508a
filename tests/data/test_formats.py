"""ranking_jax.data.formats (raw file formats): malformed lines raise errors naming file:line and what was
expected; TREC runs round-trip; ids map to rows; counted skips."""

import functools
import logging
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT
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
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, "4 whitespace-separated columns"),
    ("q1\td1\t1\nq1\td2\thigh\n", 2, "an integer relevance in the last column, not 'high'"),
    ("q1 0 d1 1\nq1 0 d2 1 extra\n", 2, "4 whitespace-separated columns"),
    # a header-less file whose first line has a float relevance: an error, not a skipped "header"
    ("q1 0 d1 1.0\nq1 0 d2 1\n", 1, r"an integer relevance in the last column, not '1.0' \(trec_eval reads integer"),
    ("qid\tdocid\trel\nq1\td1\t1\n", 1, r"an integer relevance .* skipped only when it is the BEIR header"),
    ("q1\t0\td1\t1\nq2\t0\td2\t2.0\n", 2, "an integer relevance in the last column, not '2.0'"),
    # 3 tab-separated fields, one holding a space: a BEIR id with a space or a TREC line mixing tabs and spaces
    ("q1\t0\td1\t1\nq1\t0 d2\t1\n", 2, "4 whitespace-separated columns .* not tabs and spaces mixed"),
    ("q1\tdoc one\t1\n", 1, ".*not tabs and spaces mixed .*tabs only or spaces only"),
])
def test_qrels_malformed(tmp_path, text, line, expected):
    _assert_malformed(tmp_path, "qrels.tsv", text, data.read_qrels_lines, rf"qrels.tsv:{line}: expected {expected}")
    _assert_malformed(tmp_path, "qrels.tsv", text, data.read_qrels, rf"qrels.tsv:{line}: expected {expected}")


def test_qrels_formats(tmp_path):
    beir = _file(tmp_path, "beir.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n\nq2\td3\t0\n")
    trec = _file(tmp_path, "trec.txt", "q1 0 d1 2\nq2 Q0 d3 0\n")
    expected = [("q1", "d1", 2), ("q2", "d3", 0)]
    assert [row[1:] for row in data.read_qrels_lines(beir)] == expected
    assert [row[1:] for row in data.read_qrels_lines(trec)] == expected
    assert [row[0] for row in data.read_qrels_lines(beir)] == [2, 4]  # true line numbers (blank line skipped)
    assert data.read_qrels(beir) == data.read_qrels(trec) == {"q1": {"d1": 2}, "q2": {"d3": 0}}
    upper = _file(tmp_path, "upper.tsv", "\ufeffQuery-ID\tCorpus-ID\tScore\r\nq1\td1\t-1\r\n")
    assert list(data.read_qrels_lines(upper)) == [(2, "q1", "d1", -1)]


def test_qrels_first_line_is_data_unless_beir_header(tmp_path):
    """Line 1 used to be dropped as a "header" whenever its last field was not an integer."""
    trec = _file(tmp_path, "trec.txt", "q1 0 d1 1\nq1 0 d2 0\n")
    assert list(data.read_qrels_lines(trec)) == [(1, "q1", "d1", 1), (2, "q1", "d2", 0)]
    beir = _file(tmp_path, "beir.tsv", "q1\td1\t3\nq2\td2\t1\n")
    assert data.read_qrels(beir) == {"q1": {"d1": 3}, "q2": {"d2": 1}}
    # the header is recognised on line 1 only: later it is a malformed line
    late = _file(tmp_path, "late.tsv", "q1\td1\t3\nquery-id\tcorpus-id\tscore\n")
    with pytest.raises(data.DataFormatError, match="late.tsv:2: expected an integer relevance"):
        list(data.read_qrels_lines(late))


def test_qrels_mixed_separators_give_whitespace_free_ids(tmp_path):
    """Columns come from splitting on any whitespace, so no id holds a space or a tab."""
    mixed = _file(tmp_path, "mixed.txt", "q1 0\td1 1\nq1\t0\td2\t2 \nq2  Q0 d3\t0\nq3\td4 1\n")
    assert list(data.read_qrels_lines(mixed)) == [(1, "q1", "d1", 1), (2, "q1", "d2", 2), (3, "q2", "d3", 0),
                                                  (4, "q3", "d4", 1)]
    with pytest.raises(data.DataFormatError, match=r"mixed.tsv:1: expected .*tabs only or spaces only"):
        data.read_qrels(_file(tmp_path, "mixed.tsv", "q1\t0 d1\t1\n"))


def test_qrels_duplicate_judgment_names_both_lines(tmp_path):
    path = _file(tmp_path, "dup.txt", "q1 0 d1 1\nq1 0 d2 0\n\nq1 0 d1 2\n")
    assert len(list(data.read_qrels_lines(path))) == 3  # the line reader yields repeats (builders count them)
    with pytest.raises(data.DataFormatError, match=r"dup.txt:4: expected one judgment per \(query, document\), but "
                       r"document 'd1' of query 'q1' was already judged at line 1"):
        data.read_qrels(path)


def test_jsonl_malformed(tmp_path):
    _assert_malformed(tmp_path, "corpus.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"\n',
                      data.read_jsonl, r"corpus.jsonl:2: expected one JSON object per line")
    _assert_malformed(tmp_path, "queries.jsonl", '{"_id": "1", "text": "a"}\n["x"]\n', data.read_jsonl,
                      r"queries.jsonl:2: expected a JSON object")
    _assert_malformed(tmp_path, "q2.jsonl", '{"text": "a"}\n', data.read_jsonl,
                      r"q2.jsonl:1: expected the key\(s\) \['_id'\]")


def test_run_round_trip_and_errors(tmp_path):
    run = {"q2": {"x": 0.5}, "q1": {"b": 1.0, "a": 3.0, "c": 1.0, "d": 0.1 + 0.2}}
    path = data.write_run(tmp_path / "sub" / "run.trec", run)
    assert path == tmp_path / "sub" / "run.trec"  # parent folder created
    lines = path.read_text().splitlines()
    assert lines == ["q1 Q0 a 1 3.0 ranking_jax", "q1 Q0 c 2 1.0 ranking_jax", "q1 Q0 b 3 1.0 ranking_jax",
                     "q1 Q0 d 4 0.30000000000000004 ranking_jax", "q2 Q0 x 1 0.5 ranking_jax"]
    assert data.read_run(path) == run  # full precision: 0.1 + 0.2 reads back exactly
    assert data.ranked(run["q1"]) == ["a", "c", "b", "d"]  # score descending, ties by docid descending (trec_eval)
    cut = data.write_run(tmp_path / "cut.trec", run, tag="bm25", depth=2)
    assert data.read_run(cut) == {"q1": {"a": 3.0, "c": 1.0}, "q2": {"x": 0.5}}
    assert cut.read_text().splitlines()[0] == "q1 Q0 a 1 3.0 bm25"
    with pytest.raises(ValueError, match="tag must be a non-empty word"):
        data.write_run(tmp_path / "bad.trec", run, tag="two words")


def test_run_reader_ignores_rank_and_rejects_bad_lines(tmp_path):
    # RANK is not read (trec_eval ranks by score): a non-integer or out-of-order rank changes nothing
    path = _file(tmp_path, "ranks.trec", "q1 Q0 a x 1.5 t\n\nq1 Q0 b 1 2.5 t\n")
    assert data.read_run(path) == {"q1": {"a": 1.5, "b": 2.5}}
    assert data.ranked(data.read_run(path)["q1"]) == ["b", "a"]
    _assert_malformed(tmp_path, "bad.trec", "q1 Q0 a 1 3.0 tag\nq1 Q0 b 2 two tag\n", data.read_run,
                      r"bad.trec:2: expected 6 whitespace-separated columns 'qid Q0 docid rank score tag'")
    _assert_malformed(tmp_path, "short.trec", "q1 Q0 a 1 3.0\n", data.read_run, r"short.trec:1: expected 6 ")
    _assert_malformed(tmp_path, "nan.trec", "q1 Q0 a 1 nan t\n", data.read_run, r"nan.trec:1: expected .*not NaN")
    _assert_malformed(tmp_path, "dup.trec", "q1 Q0 a 1 3.0 t\nq2 Q0 a 1 3.0 t\nq1 Q0 a 2 1.0 t\n", data.read_run,
                      r"dup.trec:3: expected each document at most once per query, but document 'a' of query 'q1' "
                      r"was already listed at line 1")


def test_formats_does_not_import_metrics():
    code = ("import sys, ranking_jax.data.formats; "
            "print(sorted(m for m in sys.modules if m.startswith('ranking_jax.metrics')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    assert proc.stdout.strip() == "[]"


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
