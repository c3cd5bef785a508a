"""ranking_jax.data.pipeline (grain pipelines): fixed shapes, masking (nothing dropped), determinism, exact resume,
per-process sharding; text, LeTOR, image and preference batches. Oracles: the TextTokenizer encodings of the texts,
the records themselves, NumPy."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ranking_jax import data

tfds.disable_progress_bar()
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A synthetic BEIR collection (40 docs, 12 queries) built with the beir builder, plus BM25 candidates."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("src")
    docs = [{"_id": f"d{i}", "title": f"doc {i}", "text": " ".join(rng.choice(WORDS, size=rng.integers(3, 40)))}
            for i in range(40)]
    queries = [{"_id": f"q{i}", "text": " ".join(rng.choice(WORDS, size=3))} for i in range(12)]
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    qrels = [f"q{q}\td{d}\t{rng.integers(0, 3)}" for q in range(12) for d in rng.choice(40, 4, replace=False)]
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    src = data.prepare(data.Beir, config="custom", data_dir=tmp_path_factory.mktemp("tfds"),
                       manual_dir=root).as_data_source()
    qrels = data.qrels_from_split(src["test"])
    rows = list(qrels)
    bm25 = data.BM25(analyze=str.split).index(data.texts(src["corpus"]))
    query_texts = data.texts(src["queries"])
    top, _ = bm25.search([query_texts[r] for r in rows], k=25)
    return {"src": src, "qrels": qrels, "candidates": data.candidates_from_search(rows, top),
            "queries": data.Texts(src["queries"]), "corpus": data.Texts(src["corpus"])}


@pytest.fixture(scope="module")
def tokenizer():
    return data.TextTokenizer(query_length=12, doc_length=24)


def test_eval_pipeline_covers_every_candidate_once(collection, tokenizer):
    records = data.eval_lists(collection["qrels"], collection["candidates"], list_size=10)
    pipe = data.text_pipeline(records, family="cross_encoder", queries=collection["queries"],
                              corpus=collection["corpus"], batch_size=4, list_size=10, train=False,
                              tokenizer=tokenizer, shard=(0, 1))
    seen = []
    for step in range(len(pipe)):
        b = pipe[step]
        assert b["pair_ids"].shape == (4, 10, tokenizer.pair_length) and b["labels"].dtype == np.float32
        assert (b["doc_index"][~b["mask"]] == -1).all() and (b["labels"][~b["mask"]] == 0).all()
        assert (b["pair_mask"][~b["mask"]] == 0).all()
        for i, j in zip(*np.nonzero(b["mask"])):
            seen.append((b["query_index"][i], b["doc_index"][i, j], b["labels"][i, j]))
        assert (b["mask"][b["query_index"] < 0] == False).all()  # noqa: E712  padded rows fully masked
    expected = []
    for q, (judged, labels) in collection["qrels"].items():
        grade = dict(zip(judged.tolist(), labels.tolist()))
        expected += [(q, d, grade.get(d, 0.0)) for d in collection["candidates"][q].tolist()]
    assert sorted(seen) == sorted(expected)  # every (query, candidate) exactly once, labels from qrels
    assert len(pipe) == -(-len(records) // 4)


def test_pair_tokens_are_the_query_and_doc_texts(collection, tokenizer):
    records = data.eval_lists(collection["qrels"], collection["candidates"], list_size=5)
    b = data.text_pipeline(records, family="cross_encoder", queries=collection["queries"],
                           corpus=collection["corpus"], batch_size=2, list_size=5, train=False,
                           tokenizer=tokenizer, shard=(0, 1))[0]
    q, d = b["query_index"][1], b["doc_index"][1, 3]
    expected = tokenizer.encode_pairs(collection["queries"][[q]], collection["corpus"][[d]])
    np.testing.assert_array_equal(b["pair_ids"][1, 3], expected["ids"][0])
    np.testing.assert_array_equal(b["pair_type_ids"][1, 3], expected["type_ids"][0])


def test_split_families_shapes(collection, tokenizer):
    records = data.eval_lists(collection["qrels"], collection["candidates"], list_size=6)
    for family in ("bi_encoder", "colbert", "tk", "prett"):
        tok = data.TextTokenizer(query_length=12, doc_length=24, colbert=family == "colbert")
        b = data.text_pipeline(records, family=family, queries=collection["queries"], corpus=collection["corpus"],
                               batch_size=3, list_size=6, train=False, tokenizer=tok, shard=(0, 1))[0]
        assert b["query_ids"].shape == (3, 12) and b["doc_ids"].shape == (3, 6, 24)
        q, d = b["query_index"][2], b["doc_index"][2, 1]
        np.testing.assert_array_equal(b["query_ids"][2], tok.encode_queries(collection["queries"][[q]])["ids"][0])
        np.testing.assert_array_equal(b["doc_mask"][2, 1], tok.encode_docs(collection["corpus"][[d]])["mask"][0])
    with pytest.raises(ValueError, match="needs a TextTokenizer with colbert=True"):
        data.text_pipeline(records, family="colbert", queries=collection["queries"], corpus=collection["corpus"],
                           batch_size=3, list_size=6, train=False, tokenizer=tokenizer, shard=(0, 1))


def _train_pipe(collection, tokenizer, *, seed=3, list_size=6, shard=(0, 1), max_positives=2):
    records = data.train_lists(collection["qrels"], collection["candidates"])
    return records, data.text_pipeline(records, family="cross_encoder", queries=collection["queries"],
                                       corpus=collection["corpus"], batch_size=4, list_size=list_size, train=True,
                                       seed=seed, max_positives=max_positives, tokenizer=tokenizer, shard=shard)


def test_training_lists_positives_then_sampled_negatives(collection, tokenizer):
    records, pipe = _train_pipe(collection, tokenizer)
    by_query = {r["query_index"]: r for r in records}
    per_epoch = -(-len(records) // 4)
    first_lists = {}
    for step in range(2 * per_epoch):
        b = pipe[step]
        for i in np.flatnonzero(b["query_index"] >= 0):
            r = by_query[b["query_index"][i]]
            docs, labels, mask = b["doc_index"][i], b["labels"][i], b["mask"][i]
            n_pos = min(2, len(r["positives"]))
            assert set(docs[:n_pos]) <= set(r["positives"]) and (labels[:n_pos] >= 1).all()
            assert np.all(np.diff(labels[:n_pos]) <= 0)  # positives ordered by label
            negs = docs[n_pos:][mask[n_pos:]]
            assert set(negs) <= set(r["negatives"]) and len(set(negs)) == len(negs) and (labels[n_pos:] == 0).all()
            assert mask.sum() == min(6, n_pos + len(r["negatives"]))  # short pools are padded, not dropped
            first_lists.setdefault(b["query_index"][i], []).append(docs.tolist())
    assert any(len(v) == 2 and v[0] != v[1] for v in first_lists.values())  # resampled each epoch
    assert sorted(first_lists) == sorted(by_query)  # every training query appears in each epoch


def test_determinism_and_exact_resume(collection, tokenizer):
    _, pipe = _train_pipe(collection, tokenizer)
    _, same = _train_pipe(collection, tokenizer)
    _, other = _train_pipe(collection, tokenizer, seed=4)
    for step in range(5):
        a, b = pipe[step], same[step]
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(pipe[s]["doc_index"], other[s]["doc_index"]) for s in range(5))

    it = pipe.iterator(num_threads=2, prefetch=2)
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    expected = [next(it) for _ in range(4)]
    resumed = same.iterator(num_threads=2, prefetch=2)
    resumed.set_state(state)
    for a, b in zip(expected, [next(resumed) for _ in range(4)]):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    for a, step in zip(expected, range(7, 11)):  # iterator == random access
        assert np.array_equal(a["doc_index"], pipe[step]["doc_index"])
    with pytest.raises(ValueError, match="saved by a different pipeline"):
        other.iterator().set_state(state)


def _concat(batches):
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _same_global_batches(make, steps):
    """``make(shard)`` pipelines: at every step the processes' batches, concatenated in process order, are the
    one-process batch (every field, bit for bit), and every process has as many steps."""
    one = make((0, 1))
    for count in (2, 4):
        parts = [make((i, count)) for i in range(count)]
        assert len({len(p) for p in parts}) == 1
        for step in range(steps):
            glued, single = _concat([p[step] for p in parts]), one[step]
            assert glued.keys() == single.keys()
            for k in single:
                np.testing.assert_array_equal(glued[k], single[k], err_msg=f"{k} at step {step}, {count} processes")
        assert parts[-1].fingerprint == one.fingerprint  # a checkpoint's data state resumes on any process count


def test_the_global_batch_does_not_depend_on_the_process_count(collection, tokenizer, tmp_path):
    records = data.eval_lists(collection["qrels"], collection["candidates"], list_size=10)
    kw = dict(family="cross_encoder", queries=collection["queries"], corpus=collection["corpus"], list_size=10,
              tokenizer=tokenizer)
    _same_global_batches(lambda shard: data.text_pipeline(records, batch_size=4, train=False, shard=shard, **kw),
                         steps=3)
    train = data.train_lists(collection["qrels"], collection["candidates"])
    _same_global_batches(lambda shard: data.text_pipeline(
        train, family="bi_encoder", queries=collection["queries"], corpus=collection["corpus"], batch_size=4,
        list_size=6, train=True, seed=3, max_positives=2, tokenizer=tokenizer, shard=shard), steps=7)
    digits = data.prepare(data.ImageClasses, config="digits", data_dir=tmp_path / "img").as_data_source()["train"]
    _same_global_batches(lambda shard: data.image_pipeline(digits, batch_size=16, train=True, seed=1, max_value=16,
                                                           classes_per_batch=4, shard=shard), steps=3)
    letor = [{"query_index": q, "doc_index": np.arange(7, dtype=np.int32), "labels": np.arange(7, dtype=np.float32),
              "features": np.full((7, 2), q, np.float32)} for q in range(9)]
    _same_global_batches(lambda shard: data.letor_pipeline(letor, batch_size=4, list_size=5, train=True, seed=2,
                                                           shard=shard), steps=5)
    with pytest.raises(ValueError, match="batch_size=6 must be a positive multiple of the number of processes"):
        data.letor_pipeline(letor, batch_size=6, list_size=5, train=True, shard=(0, 4))


def test_teacher_lists_carry_scores(collection, tokenizer):
    records = data.teacher_lists([(0, 5, 7, 9.5, -1.0), (1, 2, 3, 0.25, 0.5)])
    b = data.text_pipeline(records, family="cross_encoder", queries=collection["queries"],
                           corpus=collection["corpus"], batch_size=4, list_size=2, train=True, seed=0,
                           tokenizer=tokenizer, shard=(0, 1))[0]
    rows = {b["query_index"][i]: i for i in range(4) if b["query_index"][i] >= 0}
    np.testing.assert_array_equal(b["teacher_scores"][rows[0]], [9.5, -1.0])
    np.testing.assert_array_equal(b["doc_index"][rows[1]], [2, 3])
    np.testing.assert_array_equal(b["labels"][rows[1]], [1, 0])


def test_letor_pipeline(tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    for q, n in ((1, 3), (2, 12), (3, 7)):
        for _ in range(n):
            lines.append(f"{rng.integers(0, 5)} qid:{q} " + " ".join(f"{j}:{rng.normal():.3f}" for j in (1, 2, 3, 4)))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.txt").write_text("\n".join(lines) + "\n")
    src = data.prepare(data.Letor, config="custom", data_dir=tmp_path / "out",
                       manual_dir=tmp_path / "src").as_data_source()["train"]
    evals = data.letor_records(src, list_size=5, train=False, normalization="query_minmax")
    assert [len(r["labels"]) for r in evals] == [3, 5, 5, 2, 5, 2]  # long lists split, nothing dropped
    pipe = data.letor_pipeline(evals, batch_size=4, list_size=5, train=False)  # shard from jax.process_*
    b = pipe[0]
    assert b["features"].shape == (4, 5, 4) and b["mask"].sum() == 3 + 5 + 5 + 2
    full = data.normalize(src[1]["features"], mode="query_minmax")  # normalized over the whole list
    np.testing.assert_allclose(b["features"][1], full[:5], rtol=1e-6)
    np.testing.assert_array_equal(b["features"][0, 3:], 0)
    train = data.letor_pipeline(data.letor_records(src, list_size=5, train=True, normalization="none"),
                                batch_size=3, list_size=5, train=True, seed=0, shard=(0, 1))
    for step in range(4):
        b = train[step]
        for i in range(3):
            q = b["query_index"][i]
            rows = b["doc_index"][i][b["mask"][i]]
            assert len(rows) == min(5, len(src[q]["labels"])) and np.all(np.diff(rows) > 0)  # subset, in order
            np.testing.assert_array_equal(b["features"][i][b["mask"][i]], src[q]["features"][rows])


def test_image_pipelines(tmp_path):
    src = data.prepare(data.ImageClasses, config="digits", data_dir=tmp_path).as_data_source()
    pk = data.image_pipeline(src["train"], batch_size=12, train=True, seed=0, max_value=16, classes_per_batch=3,
                             shard=(0, 1))
    for step in range(3):
        b = pk[step]
        assert b["images"].shape == (12, 64) and b["images"].max() <= 1.0 and b["mask"].all()
        counts = np.bincount(b["class_labels"], minlength=5)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4]
        assert np.array_equal(b["images"], pk.dataset[step]["images"])  # deterministic
    test = data.image_pipeline(src["test"], batch_size=64, train=False, max_value=16, shard=(0, 1))
    last = test[len(test) - 1]
    n = len(src["test"])
    assert last["mask"].sum() == n - 64 * (len(test) - 1) and (last["class_labels"][~last["mask"]] == -1).all()
    np.testing.assert_allclose(test[0]["images"][5], src["test"][5]["image"].reshape(-1) / 16.0)


def test_preference_pipeline(tmp_path):
    (tmp_path / "src").mkdir()
    rows = [{"prompt": f"prompt {i}", "chosen": "good answer", "rejected": "bad", "chosen_score": 2.0 + i,
             "rejected_score": 1.0, "tie": i == 2} for i in range(5)]
    (tmp_path / "src" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out",
                       manual_dir=tmp_path / "src").as_data_source()["train"]
    pipe = data.preference_pipeline(src, batch_size=4, train=False, prompt_length=8, response_length=6,
                                    shard=(0, 1))
    b0, b1 = pipe[0], pipe[1]
    assert b0["prompt_ids"].shape == (4, 8) and b0["chosen_ids"].shape == (4, 6)
    np.testing.assert_array_equal(b0["chosen_score"], [2, 3, 4, 5])
    np.testing.assert_array_equal(b0["labels"], [[1, 0], [1, 0], [1, 1], [1, 0]])
    assert b0["tie"].tolist() == [False, False, True, False]
    assert b1["mask"].tolist() == [[True, True]] + [[False, False]] * 3  # 5 pairs: last batch padded
    tok = data.TextTokenizer()
    np.testing.assert_array_equal(b1["prompt_ids"][0], tok.encode(["prompt 4"], length=8)["ids"][0])


def test_preference_pairs_is_cls_prompt_sep_response_sep(tmp_path):
    texts = [("what is a cat?", "a small animal", "a kind of bread"), ("hello", "hi there", "goodbye now"),
             ("tell me a story", "once upon a time", "no")]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.jsonl").write_text("".join(
        json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in texts))
    src = data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out",
                       manual_dir=tmp_path / "src").as_data_source()["train"]
    ref = np.array([[1.5, -2.0], [0.25, 0.5], [3.0, 4.0]], np.float32)
    pipe = data.preference_pipeline(src, batch_size=4, train=False, prompt_length=8, response_length=6, pairs=True,
                                    extra={"reference_scores": ref}, shard=(0, 1))
    b = pipe[0]
    assert "prompt_ids" not in b and b["pair_ids"].shape == (4, 2, 13)
    tok = data.TextTokenizer(query_length=8, doc_length=6)
    expected = tok.encode_pairs([p for p, _, _ in texts for _ in (0, 1)], [x for _, c, r in texts for x in (c, r)])
    for name in ("ids", "mask", "type_ids"):
        np.testing.assert_array_equal(b[f"pair_{name}"][:3].reshape(6, -1), expected[name])
        assert not b[f"pair_{name}"][3].any()  # padding row
    np.testing.assert_array_equal(b["reference_scores"], np.concatenate([ref, np.zeros((1, 2))]))
    with pytest.raises(ValueError, match="one entry per row"):
        data.preference_pipeline(src, batch_size=4, train=False, extra={"reference_scores": ref[:2]}, shard=(0, 1))


@pytest.mark.parametrize("family", ["cross_encoder", "bi_encoder"])
def test_pretokenized_batches_equal_tokenizing_per_batch(collection, tokenizer, family):
    """TokenTable lookups give the same batches as tokenizing the texts of every batch."""
    records = data.eval_lists(collection["qrels"], collection["candidates"], list_size=7)
    kw = dict(family=family, queries=collection["queries"], corpus=collection["corpus"], batch_size=3, list_size=7,
              train=False, tokenizer=tokenizer, shard=(0, 1))
    tables, texts = data.text_pipeline(records, **kw), data.text_pipeline(records, pretokenize=False, **kw)
    for step in range(len(tables)):
        a, b = tables[step], texts[step]
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
