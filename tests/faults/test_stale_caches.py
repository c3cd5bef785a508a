"""Fault class: stale caches. A source edited in place under the same path, or another collection built through the
same folder, is never served an old build: caches are keyed by content, a rebuild logs which file changed, a reused
entry is not rebuilt, and an interrupted build leaves no entry behind."""

import json
import logging

import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from helpers import load_script, teacher_collection
from ranking_jax import data
from ranking_jax.tasks import cache

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return teacher_collection(tmp_path_factory)


def test_cache_is_keyed_by_content_and_says_why_it_rebuilds(tmp_path, caplog):
    config = ConfigDict({"data": {"cache_dir": str(tmp_path / "cache")}})
    source = tmp_path / "collection"
    source.mkdir()
    (source / "qrels.tsv").write_text("q1\td1\t1\n")
    builds = []

    def build(out):
        builds.append(out)
        (out / "copy.txt").write_text((source / "qrels.tsv").read_text())

    first = cache.cached(config, "toy", key=(source, "bm25", 10), build=build)
    again = cache.cached(config, "toy", key=(source, "bm25", 10), build=build)
    assert first == again and len(builds) == 1 and (first / "copy.txt").read_text() == "q1\td1\t1\n"
    other = cache.cached(config, "toy", key=(source, "bm25", 20), build=build)  # another key: another entry
    assert other != first and len(builds) == 2
    (source / "qrels.tsv").write_text("q1\td1\t0\n")  # edited in place, same path
    with caplog.at_level(logging.WARNING, logger="ranking_jax.tasks.cache"):
        edited = cache.cached(config, "toy", key=(source, "bm25", 10), build=build)
    assert edited != first and len(builds) == 3 and (edited / "copy.txt").read_text() == "q1\td1\t0\n"
    assert "toy: rebuilding, since" in caplog.text and str(source.resolve()) in caplog.text
    assert (first / "copy.txt").read_text() == "q1\td1\t1\n"  # the old entry is never served for the new content
    key = json.loads((edited / "KEY.json").read_text())
    assert key["sources"][str(source.resolve())] == cache.content_hash(source, cache_root=cache.root(config))


def test_a_failed_build_leaves_no_entry(tmp_path):
    config = ConfigDict({"data": {"cache_dir": str(tmp_path / "cache")}})

    def broken(out):
        (out / "half.txt").write_text("x")
        raise RuntimeError("interrupted")

    try:
        cache.cached(config, "toy", key=("a",), build=broken)
    except RuntimeError:
        pass
    assert not list((tmp_path / "cache").glob("toy-*"))  # neither an entry nor a half-written folder
    calls = []
    cache.cached(config, "toy", key=("a",), build=lambda out: calls.append(out))
    assert len(calls) == 1


def test_one_data_dir_serves_each_collection_its_own_build(collection, tmp_path):
    """Two --manual_dir collections scored through one --data_dir: the second is built from its own files (it
    used to be served the first's build, and its valid ids were then refused)."""
    script = load_script("score_teacher")
    other = tmp_path / "other"
    (other / "qrels").mkdir(parents=True)
    (other / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"x{i}", "text": f"other text {i}"}) + "\n"
                                                for i in range(4)))
    (other / "queries.jsonl").write_text(json.dumps({"_id": "qx", "text": "other"}) + "\n")
    (other / "qrels" / "train.tsv").write_text("qx\tx0\t1\n")
    spec = ("models.cross_encoder(config={'hidden_size': 16, 'num_hidden_layers': 1, 'num_attention_heads': 2, "
            "'intermediate_size': 32}, seed=1)")
    shared = tmp_path / "shared_data_dir"
    for root, triple in ((collection["root"], "q0\tdoc0\tdoc1\n"), (other, "qx\tx0\tx3\n")):
        (tmp_path / "t.tsv").write_text(triple)
        script.main(["--model", spec, "--config", "custom", "--data_dir", str(shared), "--manual_dir", str(root),
                     "--triples", str(tmp_path / "t.tsv"), "--query_length", "8", "--doc_length", "16",
                     "--out", str(tmp_path / "out.tsv")])
    [(_, _, _, q, p, n)] = list(data.read_teacher_triples(tmp_path / "out.tsv"))
    assert (q, p, n) == ("qx", "x0", "x3")
