"""ranking_jax.data.msmarco: the MS MARCO passage tfds builder round-trips a tiny collection written by the test
(corpus, queries, qrels, the BM25 top-1000 file order, Margin-MSE teacher triples) and counts skipped rows."""

import numpy as np
import tensorflow_datasets as tfds

from helpers import write_lines
from ranking_jax import data

tfds.disable_progress_bar()


def test_msmarco_passage_round_trip(tmp_path):
    root = tmp_path / "msmarco"
    write_lines(root / "collection.tsv", [f"{i}\tpassage number {i}" for i in range(6)])
    write_lines(root / "queries.train.tsv", ["10\tfirst train query", "11\tsecond train query"])
    write_lines(root / "queries.dev.tsv", ["20\tdev query"])
    write_lines(root / "qrels.train.tsv", ["10\t0\t3\t1", "11\t0\t4\t1", "11\t0\t5\t1"])
    write_lines(root / "qrels.dev.small.tsv", ["20\t0\t2\t1", "20\t0\t99\t1"])
    write_lines(root / "top1000.dev", ["20\t2\tdev query\tpassage number 2", "20\t0\tdev query\tpassage number 0",
                                       "20\t5\tdev query\tpassage number 5"])
    write_lines(root / data.msmarco.TEACHER_FILE, ["9.5\t-1.25\t10\t3\t1", "7.0\t2.0\t11\t4\t0", "1\t0\t12\t4\t0"])
    builder = data.prepare(data.MsmarcoPassage, config="manual", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert {k: len(v) for k, v in src.items()} == {"corpus": 6, "queries": 3, "train": 2, "dev": 1, "bm25_dev": 1,
                                                    "teacher_train": 2}
    assert src["corpus"][4]["text"] == b"passage number 4" and src["queries"][2]["query_id"] == b"20"
    np.testing.assert_array_equal(src["train"][1]["doc_index"], [4, 5])
    np.testing.assert_array_equal(src["bm25_dev"][0]["doc_index"], [2, 0, 5])  # file order kept
    t = src["teacher_train"][0]
    assert t["query_index"] == 0 and list(t["doc_index"]) == [3, 1]
    np.testing.assert_allclose(t["teacher_scores"], [9.5, -1.25])
    skipped = builder.info.metadata["skipped"]
    assert skipped["dev"] == {"doc id not in corpus": 1} and skipped["teacher_train"] == {"id not in queries/corpus": 1}
