"""``msmarco_passage``: MS MARCO passage ranking (Nguyen et al., 2016) as a tfds builder (array_record).

Source files (official downloads, or all in one manual_dir):
  ``collection.tsv`` (pid, passage), ``queries.train.tsv`` / ``queries.dev.tsv`` (qid, query),
  ``qrels.train.tsv`` / ``qrels.dev.small.tsv`` (TREC qrels), ``top1000.dev`` (qid, pid, query, passage:
  the official BM25 top-1000 candidates) and the Margin-MSE teacher triples of Hofstätter et al. (2020),
  ``bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv`` (``pos_score neg_score qid pid_pos pid_neg``).
  ``top1000.dev`` and the teacher file are optional in a manual_dir (their splits are then absent).

Splits (schema of :func:`ranking_jax.data.beir.ranking_features`):
  ``corpus`` (doc_id, text; row = doc_index), ``queries`` (train then dev queries; row = query_index),
  ``train`` / ``dev`` (qrels.train / qrels.dev.small grouped per query: doc_ids, doc_index, labels),
  ``bm25_dev`` (top1000.dev grouped per query in file order: doc_ids, doc_index; the file has no scores),
  ``teacher_train`` (one row per triple: doc_ids/doc_index = [pos, neg], teacher_scores = [pos, neg]).
Rows naming unknown ids are skipped, counted in ``info.metadata["skipped"]`` and logged.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats
from ranking_jax.data._tfds import find_source
from ranking_jax.data.beir import example, group_by_query, group_qrels, ranking_features

__all__ = ["MsmarcoPassage", "TEACHER_COLUMNS", "read_teacher_triples", "write_teacher_triples"]

_BASE = "https://msmarco.z22.web.core.windows.net/msmarcoranking/"
URLS = {"collectionandqueries": _BASE + "collectionandqueries.tar.gz", "top1000_dev": _BASE + "top1000.dev.tar.gz",
        "teacher": "https://zenodo.org/record/4068216/files/bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv"}
TEACHER_FILE = "bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv"
TEACHER_COLUMNS = ("pos_score", "neg_score", "qid", "pid_pos", "pid_neg")


@dataclasses.dataclass
class MsmarcoConfig(tfds.core.BuilderConfig):
    download: bool = True


class MsmarcoPassage(tfds.core.GeneratorBasedBuilder):
    """MS MARCO passage: corpus, queries, qrels, BM25 top-1000 candidates and Margin-MSE teacher triples."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [MsmarcoConfig(name="default", description="Official MS MARCO passage files."),
                       MsmarcoConfig(name="manual", download=False, description="Files from manual_dir only.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put collection.tsv, queries.{{train,dev}}.tsv, qrels.train.tsv, qrels.dev.small.tsv (from "
        f"{URLS['collectionandqueries']}), optionally top1000.dev (from {URLS['top1000_dev']}) and "
        f"{TEACHER_FILE} (from {URLS['teacher']}) in manual_dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=__doc__, disable_shuffling=True,
                                     metadata=tfds.core.MetadataDict(), features=ranking_features(),
                                     homepage="https://microsoft.github.io/msmarco/")

    def _split_generators(self, dl_manager):
        download = self.builder_config.download
        root = find_source(dl_manager, name="msmarco_passage", marker="collection.tsv",
                           url=URLS["collectionandqueries"] if download else None,
                           instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        extra = {}
        for key, name in (("top1000_dev", "top1000.dev"), ("teacher", TEACHER_FILE)):
            if (root / name).exists() or not download:
                extra[key] = root / name
            else:
                path = pathlib.Path(dl_manager.download_and_extract(URLS[key]))
                extra[key] = next(iter(path.rglob(name)), path) if path.is_dir() else path
        collection = root / "collection.tsv"
        query_files = [root / "queries.train.tsv", root / "queries.dev.tsv"]
        docs = formats.IdIndex.from_rows((collection, n, pid) for n, (pid,) in _first_column(collection))
        queries = formats.IdIndex.from_rows((p, n, qid) for p in query_files for n, (qid,) in _first_column(p))

        splits = {"corpus": self._generate_examples(kind="corpus", paths=[collection]),
                  "queries": self._generate_examples(kind="queries", paths=query_files)}
        skipped = self.info.metadata["skipped"] = {}
        for split, name in (("train", "qrels.train.tsv"), ("dev", "qrels.dev.small.tsv")):
            lists, skipped[split] = group_qrels(root / name, queries=queries, docs=docs)
            splits[split] = self._generate_examples(kind="lists", lists=lists)
        if extra["top1000_dev"].exists():
            rows = ((n, qid, pid, 0) for n, (qid, pid, _, _) in
                    formats.read_tsv(extra["top1000_dev"], ("qid", "pid", "query", "passage")))
            lists, skipped["bm25_dev"] = group_by_query(rows, source=str(extra["top1000_dev"]), queries=queries,
                                                        docs=docs, field=None)
            splits["bm25_dev"] = self._generate_examples(kind="lists", lists=lists)
        if extra["teacher"].exists():
            splits["teacher_train"] = self._generate_examples(kind="teacher", paths=[extra["teacher"]],
                                                              queries=queries, docs=docs)
        return splits

    def _generate_examples(self, *, kind: str, paths=(), lists=(), queries=None, docs=None):
        if kind == "lists":
            yield from enumerate(example(**fields) for fields in lists)
        elif kind in ("corpus", "queries"):
            rows = (row for p in paths for _, row in formats.read_tsv(p, ("id", "text")))
            id_key = "doc_id" if kind == "corpus" else "query_id"
            yield from enumerate(example(**{id_key: id_, "text": text}) for id_, text in rows)
        else:  # teacher triples; counted skips are logged when the file is exhausted
            skipped = formats.Skipped(str(paths[0]))
            row = 0
            for n, pos, neg, qid, pid_pos, pid_neg in read_teacher_triples(paths[0]):
                missing = [i for i, ids in ((qid, queries), (pid_pos, docs), (pid_neg, docs)) if i not in ids]
                if missing:
                    skipped.add("id not in queries/corpus", f"line {n}: {missing}")
                    continue
                yield row, example(query_id=qid, query_index=queries[qid], doc_ids=[pid_pos, pid_neg],
                                   doc_index=np.array([docs[pid_pos], docs[pid_neg]], np.int32),
                                   teacher_scores=np.array([pos, neg], np.float32))
                row += 1
            self.info.metadata["skipped"]["teacher_train"] = skipped.report()


def _first_column(path):
    """The ids of an ``id<TAB>text`` file, without splitting the (long) text column."""
    for n, line in formats.numbered_lines(path):
        head, sep, _ = line.partition("\t")
        if not sep:
            raise formats.DataFormatError(path, n, "tab-separated 'id<TAB>text'", line)
        yield n, (head,)


def write_teacher_triples(path, triples, scores, *, query_ids, doc_ids) -> pathlib.Path:
    """Writes ``pos_score neg_score qid pid_pos pid_neg`` lines (the paper's format, :data:`TEACHER_COLUMNS`) of
    index ``triples`` ``(query, pos, neg)`` and their teacher ``scores`` ``[n, 2]``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for (q, p, n), (sp, sn) in zip(triples, scores):
            f.write(f"{sp:.6f}\t{sn:.6f}\t{query_ids[q]}\t{doc_ids[p]}\t{doc_ids[n]}\n")
    return path


def read_teacher_triples(path):
    """Yields ``(line, pos_score, neg_score, qid, pid_pos, pid_neg)`` of a Margin-MSE teacher-score file."""
    for n, row in formats.read_tsv(path, TEACHER_COLUMNS, types=(float, float, str, str, str)):
        yield (n, *row)
