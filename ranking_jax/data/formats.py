"""Readers and writers of the raw ranking file formats, with file:line errors and counted skips.

Formats: BEIR ``corpus.jsonl``/``queries.jsonl`` (``{"_id", "title", "text"}``), qrels (BEIR
``query-id<TAB>corpus-id<TAB>score`` with a header, or TREC ``qid 0 docid rel``), TREC run files
(``qid Q0 docid rank score tag``), MS MARCO TSVs, SVMlight/LETOR (``label qid:N i:v ...``), IDX images.
This module owns qrels and run files: :func:`read_qrels` / :func:`read_run` give ``{qid: {docid: value}}``,
:func:`write_run` writes that form in trec_eval's order (:func:`ranked`); :mod:`ranking_jax.metrics.trec` only
evaluates such dicts.
A malformed line raises :class:`DataFormatError` naming ``file:line``, what was expected and what was
found. Rows that are left out on purpose (e.g. qrels whose ids are not in the corpus) go through
:class:`Skipped`, which counts them by reason and logs the counts: nothing is dropped silently.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import math
import os
import pathlib
import struct
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["DataFormatError", "Skipped", "IdIndex", "open_text", "numbered_lines", "read_jsonl", "read_qrels",
           "read_qrels_lines", "read_run", "ranked", "write_run", "read_tsv", "read_svmlight", "read_idx"]

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


def numbered_lines(path: PathLike, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines; a line that does not decode names the file and line."""
    path = pathlib.Path(path)
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{n}: not {encoding.upper()} at byte {e.start} of the line ({e.reason}); "
                                 f"convert the file to {encoding.upper()}") from None
            if line.strip():
                yield n, line


def read_jsonl(path: PathLike, *, required: Sequence[str] = ("_id",)) -> Iterator[tuple[int, dict]]:
    """Yields ``(line_number, object)`` per non-blank line; every object must have the ``required`` keys."""
    for n, line in numbered_lines(path):
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


_BEIR_HEADER = ["query-id", "corpus-id", "score"]
_QRELS_FORMAT = ("4 whitespace-separated columns 'qid iteration docid relevance' (TREC) or 3 tab-separated columns "
                 "'query-id corpus-id score' (BEIR)")
_RUN_FORMAT = "6 whitespace-separated columns 'qid Q0 docid rank score tag' with a numeric score"


def _qrels_columns(path: PathLike, n: int, line: str) -> list[str]:
    """The columns of a qrels line, split on any whitespace (ids never contain whitespace).

    A line with 3 tab-separated fields, one of which holds a space, is ambiguous (a BEIR id with a space, or a
    TREC line mixing tabs and spaces): it raises rather than guess which columns are ids.
    """
    cols = line.split()
    tabbed = line.strip().split("\t")
    if len(tabbed) == 3 and len(cols) != 3:
        raise DataFormatError(path, n, f"{_QRELS_FORMAT}, not tabs and spaces mixed (a field holds whitespace, and "
                              "ids cannot); separate the columns with tabs only or spaces only", line)
    if len(cols) not in (3, 4):
        raise DataFormatError(path, n, _QRELS_FORMAT, line)
    return cols


def read_qrels_lines(path: PathLike) -> Iterator[tuple[int, str, str, int]]:
    """Yields ``(line_number, query_id, doc_id, relevance)`` of a qrels file (``.gz`` accepted).

    Accepts BEIR qrels (``query-id<TAB>corpus-id<TAB>score``; line 1 is skipped only when it is exactly that
    header) and TREC qrels (``qid iteration docid relevance``). Relevance must be an integer, as in trec_eval;
    any other line raises :class:`DataFormatError`. Repeated judgments are yielded as they come.
    """
    for n, line in numbered_lines(path):
        if n == 1 and [c.strip().lower() for c in line.lstrip("\ufeff").split("\t")] == _BEIR_HEADER:
            continue
        cols = _qrels_columns(path, n, line)
        qid, did, rel = (cols[0], cols[2], cols[3]) if len(cols) == 4 else cols
        try:
            relevance = int(rel)
        except ValueError:
            header = " (line 1 is skipped only when it is the BEIR header 'query-id<TAB>corpus-id<TAB>score')"
            raise DataFormatError(path, n, f"an integer relevance in the last column, not {rel!r} (trec_eval reads "
                                  f"integer relevance){header if n == 1 else ''}", line) from None
        yield n, qid, did, relevance


def _by_query(records: Iterable[tuple[int, str, str, float]], path: PathLike, rule: str,
              verb: str) -> dict[str, dict[str, float]]:
    """``{query_id: {doc_id: value}}`` of ``(line, query_id, doc_id, value)`` records; a second record of one
    (query, document) raises :class:`DataFormatError` naming both lines."""
    table: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for n, qid, did, value in records:
        seen = first_line.setdefault((qid, did), n)
        if seen != n:
            raise DataFormatError(path, n, f"{rule}, but document {did!r} of query {qid!r} was already {verb} at "
                                  f"line {seen}; remove one of the two lines")
        table.setdefault(qid, {})[did] = value
    return table


def read_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Reads qrels (:func:`read_qrels_lines`) into ``{query_id: {doc_id: relevance}}``; a second judgment of one
    (query, document) raises :class:`DataFormatError` naming ``file:line``."""
    return _by_query(read_qrels_lines(path), path, "one judgment per (query, document)", "judged")


def _run_lines(path: PathLike) -> Iterator[tuple[int, str, str, float]]:
    """Yields ``(line_number, query_id, doc_id, score)`` of a TREC run; the RANK column is not read."""
    for n, line in numbered_lines(path):
        cols = line.split()
        try:
            qid, _, did, _, score, _ = cols
            value = float(score)
        except ValueError:
            raise DataFormatError(path, n, _RUN_FORMAT, line) from None
        if math.isnan(value):
            raise DataFormatError(path, n, "a numeric score (column 5), not NaN", line)
        yield n, qid, did, value


def read_run(path: PathLike) -> dict[str, dict[str, float]]:
    """Reads a TREC run (``qid Q0 docid rank score tag``, ``.gz`` accepted) into ``{query_id: {doc_id: score}}``.

    A malformed line, a NaN score or a document listed twice for one query raises :class:`DataFormatError`
    naming ``file:line``. The RANK column is not read: trec_eval ranks by score (:func:`ranked`).
    """
    return _by_query(_run_lines(path), path, "each document at most once per query", "listed")


def ranked(docs: Mapping[str, float]) -> list[str]:
    """The doc ids of one query's ``{doc_id: score}`` in trec_eval's order: score descending, ties by doc id
    descending (string order)."""
    by_id = sorted(docs, reverse=True)
    return sorted(by_id, key=lambda d: -docs[d])  # stable: ties keep the doc-id-descending order


def write_run(path: PathLike, run: Mapping[str, Mapping[str, float]], *, tag: str = "ranking_jax",
              depth: int | None = None) -> pathlib.Path:
    """Writes ``{query_id: {doc_id: score}}`` as a TREC run and returns its path (parent folders are created).

    Queries are sorted by id, documents in trec_eval's order (:func:`ranked`, ranks 1, 2, ...), at most
    ``depth`` a query; scores are written with full precision, so reading the file back gives the same run.
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"write_run: tag must be a non-empty word without whitespace, got {tag!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid in sorted(run):
            docs = run[qid]
            for rank, did in enumerate(ranked(docs)[:depth], start=1):
                f.write(f"{qid} Q0 {did} {rank} {float(docs[did])!r} {tag}\n")
    return path


def read_tsv(path: PathLike, columns: Sequence[str], *, types: Sequence[type] | None = None,
             ) -> Iterator[tuple[int, tuple]]:
    """Yields ``(line_number, values)`` of a TSV with exactly ``len(columns)`` columns, cast to ``types``."""
    types = types or [str] * len(columns)
    for n, line in numbered_lines(path):
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
    for n, line in numbered_lines(path, encoding="latin-1"):
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
