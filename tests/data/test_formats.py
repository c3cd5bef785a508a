"""ranking_jax.data.formats (raw file formats): BEIR and TREC qrels read alike; TREC runs round-trip; ids map to rows;
counted skips. Malformed lines, which raise errors naming file:line and what was expected:
tests/faults/test_bad_input_files.py."""

import logging
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, write_text
from ranking_jax import data


def test_qrels_formats(tmp_path):
    beir = write_text(tmp_path, "beir.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n\nq2\td3\t0\n")
    trec = write_text(tmp_path, "trec.txt", "q1 0 d1 2\nq2 Q0 d3 0\n")
    expected = [("q1", "d1", 2), ("q2", "d3", 0)]
    assert [row[1:] for row in data.read_qrels_lines(beir)] == expected
    assert [row[1:] for row in data.read_qrels_lines(trec)] == expected
    assert [row[0] for row in data.read_qrels_lines(beir)] == [2, 4]  # true line numbers (blank line skipped)
    assert data.read_qrels(beir) == data.read_qrels(trec) == {"q1": {"d1": 2}, "q2": {"d3": 0}}
    upper = write_text(tmp_path, "upper.tsv", "\ufeffQuery-ID\tCorpus-ID\tScore\r\nq1\td1\t-1\r\n")
    assert list(data.read_qrels_lines(upper)) == [(2, "q1", "d1", -1)]


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


def test_formats_does_not_import_metrics():
    code = ("import sys, ranking_jax.data.formats; "
            "print(sorted(m for m in sys.modules if m.startswith('ranking_jax.metrics')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    assert proc.stdout.strip() == "[]"


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
