"""tfds builders (array_record, no TensorFlow): round-trip counts and values against the source files.

Oracles: the fixture files the tests write (counts, ids, labels parsed by hand), scikit-learn's
``load_svmlight_file`` for SVMlight features, ``load_digits`` for the digits images, NumPy statistics.
"""

import gzip
import json
import os
import pathlib
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ranking_jax import data
from ranking_jax.data import images as images_lib

tfds.disable_progress_bar()


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir_src") / "custom"
    docs = [{"_id": f"d{i}", "title": f"title {i}" if i % 2 else "", "text": f"text of doc {i} é"} for i in range(7)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(4)]
    _write(root / "corpus.jsonl", [json.dumps(d, ensure_ascii=False) for d in docs])
    _write(root / "queries.jsonl", [json.dumps(q) for q in queries])
    _write(root / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q0\td1\t2", "q0\td3\t0", "q2\td6\t1",
                                         "q0\td5\t1", "q1\tmissing_doc\t1", "q9\td1\t1", "q2\td6\t1"])
    _write(root / "qrels" / "train.tsv", ["q3\td0\t1", "q3\td2\t3"])  # TREC-free BEIR without header
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


def test_beir_missing_source_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus.jsonl found under the manual directory"):
        data.prepare(data.Beir, config="cranfield", data_dir=tmp_path, manual_dir=tmp_path / "nothing")


def test_beir_duplicate_and_malformed_lines(tmp_path):
    root = tmp_path / "src"
    _write(root / "corpus.jsonl", ['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'])
    _write(root / "queries.jsonl", ['{"_id": "q", "text": "x"}'])
    with pytest.raises(data.DataFormatError, match=r"corpus.jsonl:2: expected unique ids \(first seen at .*:1\)"):
        data.prepare(data.Beir, config="custom", data_dir=tmp_path / "out", manual_dir=root)
    _write(root / "corpus.jsonl", ['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "y"'])
    with pytest.raises(data.DataFormatError, match=r"corpus.jsonl:2: expected one JSON object per line"):
        data.prepare(data.Beir, config="custom", data_dir=tmp_path / "out2", manual_dir=root)


def test_msmarco_passage_round_trip(tmp_path):
    root = tmp_path / "msmarco"
    _write(root / "collection.tsv", [f"{i}\tpassage number {i}" for i in range(6)])
    _write(root / "queries.train.tsv", ["10\tfirst train query", "11\tsecond train query"])
    _write(root / "queries.dev.tsv", ["20\tdev query"])
    _write(root / "qrels.train.tsv", ["10\t0\t3\t1", "11\t0\t4\t1", "11\t0\t5\t1"])
    _write(root / "qrels.dev.small.tsv", ["20\t0\t2\t1", "20\t0\t99\t1"])
    _write(root / "top1000.dev", ["20\t2\tdev query\tpassage number 2", "20\t0\tdev query\tpassage number 0",
                                  "20\t5\tdev query\tpassage number 5"])
    _write(root / data.msmarco.TEACHER_FILE, ["9.5\t-1.25\t10\t3\t1", "7.0\t2.0\t11\t4\t0", "1\t0\t12\t4\t0"])
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


def _svmlight_lines(rng, qids, n_features):
    lines = []
    for q, n in qids:
        for _ in range(n):
            feats = " ".join(f"{j + 1}:{rng.normal():.4f}" for j in range(n_features) if rng.random() < 0.7)
            lines.append(f"{rng.integers(0, 5)} qid:{q} {feats} #docid = x")
    return lines


def test_letor_round_trip_against_sklearn(tmp_path):
    from sklearn.datasets import load_svmlight_file

    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    train = _write(root / "train.txt", _svmlight_lines(rng, [(1, 5), (7, 3), (2, 9), (7, 2)], 6))
    _write(root / "test.txt", _svmlight_lines(rng, [(3, 4), (4, 1)], 6))
    builder = data.prepare(data.Letor, config="custom", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert {k: len(v) for k, v in src.items()} == {"train": 4, "test": 2}  # qid 7 reappears: a second list
    assert builder.info.metadata["repeated_qids"]["train"] == {"qid reappears after other qids": 1}
    x, y, q = load_svmlight_file(str(train), query_id=True, n_features=6)
    rows = [src["train"][i] for i in range(4)]
    np.testing.assert_array_equal(np.concatenate([r["features"] for r in rows]), x.toarray().astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([r["labels"] for r in rows]), y)
    assert [r["qid"].decode() for r in rows] == ["1", "7", "2", "7"]
    assert [len(r["labels"]) for r in rows] == [5, 3, 9, 2]
    stats = builder.info.metadata["feature_stats"]
    dense = x.toarray()
    np.testing.assert_allclose(stats["mean"], dense.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], dense.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["max"], dense.max(0), rtol=1e-6)


def test_letor_real_mslr_sample(tmp_path):
    """The real MSLR-WEB10K sample (rankeval sdist) if a fetched copy exists ($RANKING_JAX_MSLR_SAMPLE)."""
    cached = pathlib.Path(os.environ.get("RANKING_JAX_MSLR_SAMPLE", "/tmp/ranking_jax_mslr_sample"))
    if not (cached / "msn1.fold1.train.5k.txt").exists():
        pytest.skip(f"MSLR sample not fetched; run scripts/prepare_mslr_sample.py --out {cached}")
    from sklearn.datasets import load_svmlight_file
    builder = data.prepare(data.Letor, config="mslr_sample", data_dir=tmp_path, manual_dir=cached)
    src = builder.as_data_source()
    assert len(src["train"]) == 43 and len(src["test"]) == 43
    x, y, _ = load_svmlight_file(str(cached / "msn1.fold1.train.5k.txt"), query_id=True, n_features=136)
    labels = np.concatenate([src["train"][i]["labels"] for i in range(43)])
    np.testing.assert_array_equal(np.bincount(labels.astype(int)), [2792, 1458, 665, 55, 30])
    np.testing.assert_array_equal(np.concatenate([src["train"][i]["features"] for i in range(43)]),
                                  x.toarray().astype(np.float32))


def test_letor_normalizations():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]], np.float32)
    np.testing.assert_allclose(data.normalize(x, mode="query_minmax"),
                               [[0, 0, 0], [0.5, 0, 2 / 7], [1, 0, 1]], rtol=1e-6)
    z = data.normalize(x, mode="query_zscore")
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - 3) / np.sqrt(8 / 3), rtol=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0)  # constant feature -> 0
    g = data.normalize(x, mode="global_zscore", stats={"mean": [1, 1, 1], "std": [2, 0, 4]})
    np.testing.assert_allclose(g, [[0, 0, 0.25], [1, 0, 0.75], [2, 0, 2]], rtol=1e-6)
    with pytest.raises(ValueError, match="needs the train statistics"):
        data.normalize(x, mode="global_zscore")
    with pytest.raises(ValueError, match="expected one of"):
        data.normalize(x, mode="zscore")


def test_preference_round_trip(tmp_path):
    root = tmp_path / "src"
    _write(root / "train.jsonl", [
        json.dumps({"prompt": "p1", "chosen": "good", "rejected": "bad", "chosen_score": 8, "rejected_score": 2.5}),
        json.dumps({"prompt": "p2", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": 1,
                    "tie": True})])
    _write(root / "test.jsonl", [json.dumps({"prompt": "p3", "chosen": "c", "rejected": "d"})])
    builder = data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert len(src["train"]) == 2 and len(src["test"]) == 1
    r = src["train"][1]
    assert r["prompt"] == b"p2" and r["tie"] and r["chosen_score"] == 1.0
    assert src["train"][0]["rejected_score"] == 2.5 and not src["train"][0]["tie"]
    assert np.isnan(src["test"][0]["chosen_score"])
    assert builder.info.metadata["has_scores"] == {"train": True, "test": False}


def test_preference_errors_name_the_line(tmp_path):
    root = tmp_path / "src"
    _write(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1,
                                              "rejected_score": 0}),
                                  json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:2: expected chosen_score and rejected_score on "
                                                   r"every row or on none"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out", manual_dir=root)
    _write(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:1: expected the key\(s\) \['rejected'\]"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out2", manual_dir=root)


def test_hh_dialogue_split():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no"
    prompt, c, r = data.preference.split_hh_dialogue(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert (c, r) == (" like this", " no")
    assert data.preference.split_hh_dialogue(chosen, "\n\nHuman: other\n\nAssistant: x") is None


def test_digits_open_world_split(tmp_path):
    from sklearn.datasets import load_digits
    builder = data.prepare(data.ImageClasses, config="digits", data_dir=tmp_path)
    src = builder.as_data_source()
    digits = load_digits()
    train_rows = [src["train"][i] for i in range(len(src["train"]))]
    test_rows = [src["test"][i] for i in range(len(src["test"]))]
    assert len(train_rows) == int((digits.target < 5).sum()) and len(test_rows) == int((digits.target >= 5).sum())
    assert {r["label"] for r in train_rows} == {0, 1, 2, 3, 4} and {r["label"] for r in test_rows} == {5, 6, 7, 8, 9}
    for r in train_rows[:50] + test_rows[-50:]:
        np.testing.assert_array_equal(r["image"], digits.images[r["index"]])
        assert r["label"] == digits.target[r["index"]]
    assert builder.info.metadata["max_value"] == 16


def _idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_layout_from_manual_dir(tmp_path, monkeypatch):
    """The builder on Fashion-MNIST-layout IDX files (a tiny fixture), and the Debian path fallback."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fm"
    root.mkdir()
    x_train, y_train = rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10
    x_test, y_test = rng.integers(0, 256, (10, 28, 28)), np.arange(10)
    for name, arr in (("train-images-idx3-ubyte.gz", x_train), ("train-labels-idx1-ubyte.gz", y_train),
                      ("t10k-images-idx3-ubyte.gz", x_test), ("t10k-labels-idx1-ubyte.gz", y_test)):
        _idx(root / name, arr)
    monkeypatch.setattr(images_lib, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "absent")
    builder = data.prepare(data.ImageClasses, config="fashion_mnist", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert len(src["train"]) == 20 and len(src["test"]) == 20  # classes 0-4 vs 5-9 of all 40 images
    r = src["test"][0]
    pooled = np.concatenate([x_train, x_test])
    np.testing.assert_array_equal(r["image"], pooled[r["index"]])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.read_fashion_mnist(tmp_path / "empty")


def test_fashion_mnist_debian_package():
    """If the Debian package is installed: 70,000 images, 7,000 per class (the published counts)."""
    if not images_lib.FASHION_MNIST_DEBIAN_DIR.exists():
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    x, y = data.read_fashion_mnist()
    assert x.shape == (70000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [7000] * 10)
