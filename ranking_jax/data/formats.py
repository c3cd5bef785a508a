"""Readers and writers of the raw ranking file formats, with file:line errors and counted skips.

Formats: BEIR ``corpus.jsonl``/``queries.jsonl`` (``{"_id", "title", "text"}``), qrels (BEIR
``query-id<TAB>corpus-id<TAB>score`` with a header, or TREC ``qid 0 docid rel``), TREC run files
(``qid Q0 docid rank score tag``), MS MARCO TSVs, SVMlight/LETOR (``label qid:N i:v ...``), IDX images.
A malformed line raises :class:`DataFormatError` naming ``file:line``, what was expected and what was
found. Rows that are left out on purpose (e.g. qrels whose ids are not in the corpus) go through
:class:`Skipped`, which counts them by reason and logs the counts: nothing is dropped silently.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import os
import pathlib
import struct
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["DataFormatError", "Skipped", "IdIndex", "open_text", "read_jsonl", "read_qrels", "read_run",
           "write_run", "read_tsv", "read_svmlight", "read_idx"]

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


class DataFormatError(ValueError):
    """A malformed input line: ``path:line: expected ...; got ...``."""

    def __init__(self, path: PathLike, line: int | None, expected: str, got: str = ""):
        where = f"{path}:{line}" if line is not None else str(path)
        got = f"; got {got[:200]!r}" if got else ""
        super().__init__(f"{where}: expected {expected}{got}")


class Skipped:
    """Counts rows left out, by reason, with the first few examples; :meth:`report` logs them."""

    def __init__(self, source: str):
        self.source = source
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(example)

    def report(self) -> dict[str, int]:
        for reason, n in sorted(self.counts.items()):
            log.warning("%s: skipped %d rows: %s (e.g. %s)", self.source, n, reason, "; ".join(self.examples[reason]))
        return dict(self.counts)


class IdIndex:
    """Maps id strings to rows 0..n-1. Stores no dict when the ids are ``"0".."n-1"`` in order (MS MARCO)."""

    def __init__(self, ids: Iterable[str]):
        self._map: dict[str, int] | None = None
        self._n = 0
        for row, id_ in enumerate(ids):
            if self._map is None and id_ != str(row):
                self._map = {str(i): i for i in range(row)}
            if self._map is not None:
                if id_ in self._map:
                    raise ValueError(f"duplicate id {id_!r} at rows {self._map[id_]} and {row}")
                self._map[id_] = row
            self._n = row + 1

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[PathLike, int, str]]) -> "IdIndex":
        """From ``(path, line, id)`` rows; a duplicate id is a :class:`DataFormatError` naming both lines."""
        seen: dict[str, tuple[PathLike, int]] = {}

        def ids():
            for path, n, id_ in rows:
                if id_ in seen:
                    raise DataFormatError(path, n, f"unique ids (first seen at {seen[id_][0]}:{seen[id_][1]})", id_)
                seen[id_] = (path, n)
                yield id_

        return cls(ids())

    def __len__(self) -> int:
        return self._n

    def get(self, id_: str) -> int | None:
        if self._map is not None:
            return self._map.get(id_)
        return int(id_) if id_.isdigit() and int(id_) < self._n and str(int(id_)) == id_ else None

    def __contains__(self, id_: str) -> bool:
        return self.get(id_) is not None

    def __getitem__(self, id_: str) -> int:
        row = self.get(id_)
        if row is None:
            raise KeyError(id_)
        return row


def open_text(path: PathLike, *, encoding: str = "utf-8"):
    """Opens a text file for reading; ``.gz`` files are decompressed."""
    path = pathlib.Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="\n")
    return open(path, encoding=encoding, newline="\n")


def _lines(path: PathLike, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    with open_text(path, encoding=encoding) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, line


def read_jsonl(path: PathLike, *, required: Sequence[str] = ("_id",)) -> Iterator[tuple[int, dict]]:
    """Yields ``(line_number, object)`` per non-blank line; every object must have the ``required`` keys."""
    for n, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, n, f"one JSON object per line ({e.msg} at column {e.colno})", line) from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, n, "a JSON object", line)
        missing = [k for k in required if k not in obj]
        if missing:
            raise DataFormatError(path, n, f"the key(s) {missing} in the JSON object", line)
        yield n, obj


def read_qrels(path: PathLike) -> Iterator[tuple[int, str, str, int]]:
    """Yields ``(line_number, query_id, doc_id, relevance)``.

    Accepts BEIR qrels (``query-id<TAB>corpus-id<TAB>score``, optional header on line 1) and TREC qrels
    (``qid iteration docid relevance``, whitespace-separated).
    """
    for n, line in _lines(path):
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) == 4:
            qid, _, did, rel = cols
        elif len(cols) == 3:
            qid, did, rel = cols
        else:
            raise DataFormatError(path, n, "3 tab-separated columns 'query-id corpus-id score' (BEIR) or 4 columns "
                                  "'qid iteration docid relevance' (TREC)", line)
        try:
            relevance = int(rel)
        except ValueError:
            if n == 1:  # header line, e.g. "query-id\tcorpus-id\tscore"
                continue
            raise DataFormatError(path, n, "an integer relevance in the last column", line) from None
        yield n, qid.strip(), did.strip(), relevance


def read_run(path: PathLike) -> dict[str, list[tuple[str, float]]]:
    """Reads a TREC run file into ``{qid: [(docid, score), ...]}`` ordered by rank (ascending)."""
    run: dict[str, list[tuple[int, str, float]]] = collections.defaultdict(list)
    for n, line in _lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise DataFormatError(path, n, "6 columns 'qid Q0 docid rank score tag'", line)
        try:
            run[cols[0]].append((int(cols[3]), cols[2], float(cols[4])))
        except ValueError:
            raise DataFormatError(path, n, "an integer rank (column 4) and a float score (column 5)", line) from None
    return {q: [(d, s) for _, d, s in sorted(rows)] for q, rows in run.items()}


def write_run(path: PathLike, rows: Iterable[tuple[str, Sequence[str], Sequence[float]]], *, tag: str = "ranking_jax"):
    """Writes ``(qid, docids, scores)`` rows as a TREC run via :func:`ranking_jax.metrics.trec.write_run`
    (full-precision scores in trec_eval's order: score descending, ties by docid descending)."""
    from ranking_jax.metrics import trec
    run: dict[str, dict[str, float]] = {}
    for qid, docids, scores in rows:
        run.setdefault(qid, {}).update(zip(docids, map(float, scores)))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trec.write_run(path, run, tag=tag)
    return path


def read_tsv(path: PathLike, columns: Sequence[str], *, types: Sequence[type] | None = None,
             ) -> Iterator[tuple[int, tuple]]:
    """Yields ``(line_number, values)`` of a TSV with exactly ``len(columns)`` columns, cast to ``types``."""
    types = types or [str] * len(columns)
    for n, line in _lines(path):
        cols = line.split("\t")
        if len(cols) != len(columns):
            raise DataFormatError(path, n, f"{len(columns)} tab-separated columns ({', '.join(columns)})", line)
        try:
            yield n, tuple(t(c) for t, c in zip(types, cols))
        except ValueError:
            expected = ", ".join(f"{c}: {t.__name__}" for c, t in zip(columns, types))
            raise DataFormatError(path, n, f"columns of types ({expected})", line) from None


def read_svmlight(path: PathLike, *, num_features: int) -> Iterator[tuple[int, float, str, np.ndarray]]:
    """Yields ``(line_number, label, qid, features[num_features])`` of an SVMlight/LETOR file.

    Line format: ``label qid:Q i:v i:v ... [# comment]`` with 1-based feature indices; absent features are 0.
    Read as latin-1 (Istella's comments are not UTF-8; the numeric part is ASCII either way).
    """
    for n, line in _lines(path, encoding="latin-1"):
        body = line.split("#", 1)[0].split()
        if len(body) < 2 or not body[1].startswith("qid:"):
            raise DataFormatError(path, n, "'label qid:Q index:value ...'", line)
        x = np.zeros(num_features, np.float32)
        try:
            label = float(body[0])
            for token in body[2:]:
                i, v = token.split(":")
                if not 1 <= int(i) <= num_features:
                    raise ValueError
                x[int(i) - 1] = float(v)
        except ValueError:
            raise DataFormatError(path, n, f"a numeric label and 'index:value' pairs with 1 <= index <= {num_features} "
                                  "(SVMlight indices are 1-based)", line) from None
        yield n, label, body[1][4:], x


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (MNIST/Fashion-MNIST layout, optionally gzipped) of unsigned bytes."""
    with (gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataFormatError(path, None, "an IDX file of unsigned bytes (magic 0x0000 08 NDIM)", data[:4].hex())
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise DataFormatError(path, None, f"{int(np.prod(shape))} bytes of data for shape {shape}",
                              f"{len(data) - offset} bytes")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)
