"""``beir``: BEIR-format collections (Thakur et al., 2021) as a tfds builder (array_record, no TensorFlow).

Source layout (the BEIR zip, or a manual_dir): ``corpus.jsonl`` (``{"_id", "title", "text"}``),
``queries.jsonl`` (``{"_id", "text"}``), ``qrels/{train,dev,test}.tsv`` (``query-id corpus-id score``).

Splits:
  ``corpus``   one row per document in file order: ``doc_id``, ``title``, ``text``; the row is ``doc_index``.
  ``queries``  one row per query in file order: ``query_id``, ``text``; the row is ``query_index``.
  ``train``/``dev``/``test`` (those with a qrels file): one row per judged query (list-grouped), in order of
               first appearance: ``query_id``, ``query_index``, ``doc_ids``, ``doc_index``, ``labels``
               (the graded judgments, any integer; 0 = judged not relevant).
Judgments whose query or document id is missing from queries/corpus are skipped, counted by reason in
``info.metadata["skipped"][split]`` and logged. Duplicate ids in corpus/queries are errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats
from ranking_jax.data._tfds import find_source

__all__ = ["Beir", "BeirConfig", "read_ids", "group_qrels", "group_by_query", "ranking_features", "example"]

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{}.zip"
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass
class BeirConfig(tfds.core.BuilderConfig):
    url: str | None = None


def _config(name: str, folder: str | None = None) -> BeirConfig:
    return BeirConfig(name=name, url=BEIR_URL.format(folder or name), description=f"BEIR {folder or name}")


class Beir(tfds.core.GeneratorBasedBuilder):
    """BEIR collections: corpus, queries and list-grouped qrels per split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        _config("scifact"), _config("nfcorpus"), _config("fiqa"), _config("arguana"), _config("scidocs"),
        _config("trec_covid", "trec-covid"), _config("quora"), _config("webis_touche2020", "webis-touche2020"),
        _config("nq"), _config("hotpotqa"), _config("dbpedia_entity", "dbpedia-entity"), _config("fever"),
        _config("climate_fever", "climate-fever"), _config("msmarco"),
        BeirConfig(name="cranfield", url=None, description=(
            "Cranfield 1400 converted to BEIR format (no official BEIR zip; manual_dir only).")),
        BeirConfig(name="custom", url=None, description="Any BEIR-format folder given as manual_dir."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/*.tsv), e.g. the unzipped BEIR "
        "download, in manual_dir (or manual_dir/<config name>).")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=__doc__, disable_shuffling=True,
                                     metadata=tfds.core.MetadataDict(), features=ranking_features(),
                                     homepage="https://github.com/beir-cellar/beir")

    def _split_generators(self, dl_manager):
        root = find_source(dl_manager, name=self.builder_config.name, url=self.builder_config.url,
                           marker="corpus.jsonl", instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        corpus, queries = root / "corpus.jsonl", root / "queries.jsonl"
        docs, qids = read_ids(corpus), read_ids(queries)
        splits = {"corpus": self._generate_examples(kind="corpus", path=corpus),
                  "queries": self._generate_examples(kind="queries", path=queries)}
        self.info.metadata["skipped"] = {}
        for split in SPLITS:
            path = root / "qrels" / f"{split}.tsv"
            if path.exists():
                lists, skipped = group_qrels(path, queries=qids, docs=docs)
                self.info.metadata["skipped"][split] = skipped
                splits[split] = self._generate_examples(kind="qrels", lists=lists)
        return splits

    def _generate_examples(self, *, kind: str, path=None, lists=None):
        if kind == "corpus":
            for row, (_, obj) in enumerate(formats.read_jsonl(path, required=("_id", "text"))):
                yield row, example(doc_id=str(obj["_id"]), title=obj.get("title") or "", text=obj["text"])
        elif kind == "queries":
            for row, (_, obj) in enumerate(formats.read_jsonl(path, required=("_id", "text"))):
                yield row, example(query_id=str(obj["_id"]), text=obj["text"])
        else:
            for row, fields in enumerate(lists):
                yield row, example(**fields)


def ranking_features() -> tfds.features.FeaturesDict:
    """One schema serves every split of the text ranking builders; fields a split does not use are empty."""
    text = tfds.features.Text()
    return tfds.features.FeaturesDict({
        "doc_id": text, "title": text, "text": text, "query_id": text,
        "query_index": tfds.features.Scalar(np.int32),
        "doc_ids": tfds.features.Sequence(text),
        "doc_index": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "teacher_scores": tfds.features.Tensor(shape=(None,), dtype=np.float32)})


def example(**fields) -> dict:
    """An example of :func:`ranking_features` with the given fields set and the others empty."""
    empty = {"doc_id": "", "title": "", "text": "", "query_id": "", "query_index": -1, "doc_ids": [],
             "doc_index": np.zeros(0, np.int32), "labels": np.zeros(0, np.int32),
             "teacher_scores": np.zeros(0, np.float32)}
    unknown = set(fields) - set(empty)
    if unknown:
        raise KeyError(f"unknown ranking example fields {sorted(unknown)}")
    return {**empty, **fields}


def read_ids(path) -> formats.IdIndex:
    """``_id`` -> row of a BEIR jsonl file; duplicate ids are an error naming both lines."""
    return formats.IdIndex.from_rows((path, n, str(obj["_id"])) for n, obj in formats.read_jsonl(path))


def group_qrels(path, *, queries: formats.IdIndex, docs: formats.IdIndex) -> tuple[list[dict], dict[str, int]]:
    """Groups a qrels file by query (first-appearance order) into list examples; returns (lists, skipped)."""
    return group_by_query(formats.read_qrels_lines(path), source=str(path), queries=queries, docs=docs, field="labels")


def group_by_query(rows, *, source: str, queries: formats.IdIndex, docs: formats.IdIndex,
                   field: str | None) -> tuple[list[dict], dict[str, int]]:
    """Groups ``(line, query_id, doc_id, value)`` rows by query, in first-appearance order.

    Each list example has ``query_id``, ``query_index``, ``doc_ids``, ``doc_index`` and (unless ``field`` is
    None) the values under ``field``. Rows with unknown ids or a repeated (query, doc) pair are skipped and
    counted; returns ``(lists, skipped counts)``.
    """
    skipped = formats.Skipped(source)
    grouped: dict[str, dict[str, float]] = {}
    for n, qid, did, value in rows:
        if qid not in queries:
            skipped.add("query id not in queries", f"line {n}: {qid}")
        elif did not in docs:
            skipped.add("doc id not in corpus", f"line {n}: {did}")
        elif did in grouped.setdefault(qid, {}):
            skipped.add("repeated (query, doc) pair; the first is kept", f"line {n}: {qid} {did}")
        else:
            grouped[qid][did] = value
    lists = []
    for qid, judged in grouped.items():
        if judged:
            lists.append({"query_id": qid, "query_index": queries[qid], "doc_ids": list(judged),
                          "doc_index": np.array([docs[d] for d in judged], np.int32)})
            if field is not None:
                lists[-1][field] = np.array(list(judged.values()), np.int32 if field == "labels" else np.float32)
    return lists, skipped.report()
