"""ranking_jax.data.beir: the tfds builder (array_record, no TensorFlow) round-trips counts and values of the
source files it is given (ids, texts, labels parsed by hand), counts and logs skipped rows, and matches the SOURCE.md
counts of the shared collections. A missing source and duplicate or malformed input (named by file and line):
tests/faults/test_bad_input_files.py."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from helpers import write_lines
from ranking_jax import data

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir_src") / "custom"
    docs = [{"_id": f"d{i}", "title": f"title {i}" if i % 2 else "", "text": f"text of doc {i} é"} for i in range(7)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(4)]
    write_lines(root / "corpus.jsonl", [json.dumps(d, ensure_ascii=False) for d in docs])
    write_lines(root / "queries.jsonl", [json.dumps(q) for q in queries])
    write_lines(root / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q0\td1\t2", "q0\td3\t0", "q2\td6\t1",
                                              "q0\td5\t1", "q1\tmissing_doc\t1", "q9\td1\t1", "q2\td6\t1"])
    write_lines(root / "qrels" / "train.tsv", ["q3\td0\t1", "q3\td2\t3"])  # TREC-free BEIR without header
    return root


def test_beir_round_trip_and_skips(beir_dir, tmp_path, caplog):
    builder = data.prepare(data.Beir, config="custom", data_dir=tmp_path, manual_dir=beir_dir.parent)
    src = builder.as_data_source()
    assert {k: len(v) for k, v in src.items()} == {"corpus": 7, "queries": 4, "test": 2, "train": 1}
    corpus = src["corpus"]
    # row i is line i of corpus.jsonl (disable_shuffling): doc_index == line order
    assert [corpus[i]["doc_id"].decode() for i in range(7)] == [f"d{i}" for i in range(7)]
    assert corpus[3]["title"].decode() == "title 3" and corpus[2]["text"].decode() == "text of doc 2 é"
    test = src["test"]
    q0, q2 = test[0], test[1]
    assert q0["query_id"] == b"q0" and q0["query_index"] == 0
    assert [d.decode() for d in q0["doc_ids"]] == ["d1", "d3", "d5"]
    np.testing.assert_array_equal(q0["doc_index"], [1, 3, 5])
    np.testing.assert_array_equal(q0["labels"], [2, 0, 1])
    assert q2["query_index"] == 2 and list(q2["doc_index"]) == [6]
    # 1 unknown doc, 1 unknown query, 1 repeated pair: counted in metadata and logged, not silently dropped
    assert builder.info.metadata["skipped"]["test"] == {
        "doc id not in corpus": 1, "query id not in queries": 1, "repeated (query, doc) pair; the first is kept": 1}
    assert builder.info.metadata["skipped"]["train"] == {}
    assert "skipped 1 rows: doc id not in corpus" in caplog.text
    np.testing.assert_array_equal(src["train"][0]["labels"], [1, 3])
    # the prepared dataset reads back without the builder class (a run on another machine)
    again = tfds.builder_from_directory(str(tmp_path / "beir" / "custom" / "1.0.0")).as_data_source()
    assert len(again["corpus"]) == 7 and again["corpus"][6]["doc_id"] == b"d6"


def test_beir_shared_collections_counts(shared_dir, tmp_path):
    """Counts equal the SOURCE.md numbers of /work/shared/data (every qrels id resolves)."""
    for name, expected in (("cranfield", {"corpus": 1400, "queries": 225, "test": 225}),
                           ("scifact", {"corpus": 5183, "queries": 1109, "train": 809, "test": 300})):
        builder = data.prepare(data.Beir, config=name, data_dir=tmp_path, manual_dir=shared_dir / "data")
        src = builder.as_data_source()
        assert {k: len(v) for k, v in src.items()} == expected
        judged = sum(len(src["test"][i]["doc_index"]) for i in range(len(src["test"])))
        assert judged == {"cranfield": 1837, "scifact": 339}[name]
        assert all(v == {} for v in builder.info.metadata["skipped"].values())
