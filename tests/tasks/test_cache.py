"""ranking_jax.tasks.cache: artifacts keyed by the content of their sources, never by a path alone; an edited
source rebuilds and the log says which file changed; a reused entry is not rebuilt."""

import json
import logging

from ml_collections import ConfigDict

from ranking_jax.tasks import cache


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
