"""Fixed-length encoder token encodings with a Hugging Face ``tokenizer.json`` (``tokenizers``).

The special tokens come from the tokenizer's own post-processor, so BERT's ``[CLS] q [SEP] d [SEP]`` and MPNet's
(RoBERTa's) ``<s> q </s></s> d </s>`` are both what the model was trained with; below in BERT's names.
Every output has a static shape, padded with [PAD] (id from the tokenizer) and masked:
  single text  ``[CLS] t [SEP]``                  ids/mask [n, length]
  query        ``[CLS] q [SEP]``                  [n, query_length]
  doc          ``[CLS] d [SEP]``                  [n, doc_length]
  pair         ``[CLS] q [SEP] d [SEP]``          [n, pair_length]; type ids 0 for the query part, 1 for
               the doc part; the query is cut to ``query_length - 2`` tokens, the doc fills the rest.
ColBERT (Khattab & Zaharia, 2020) with ``colbert=True``: the marker token [Q] (``[unused0]``) / [D]
(``[unused1]``) follows [CLS], and queries are padded with [MASK] instead of [PAD] ("query
augmentation"); the query mask is then 1 on every position, since the [MASK] embeddings take part in
MaxSim scoring.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pathlib
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

__all__ = ["TextTokenizer", "TokenTable", "Ragged"]


def _within(lengths: np.ndarray) -> np.ndarray:
    """``0..n_i-1`` for every row ``i``, concatenated: the column of each token in its row."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


class Ragged:
    """Rows of token ids stored flat (``flat`` int32, ``lengths`` per row); ``len()`` is the number of rows."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray):
        self.flat, self.lengths = flat, np.asarray(lengths, np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> "Ragged":
        lengths = np.fromiter(map(len, rows), np.int64, len(rows))
        if not lengths.sum():
            return cls(np.zeros(0, np.int32), lengths)
        if isinstance(rows[0], np.ndarray):
            return cls(np.concatenate(rows).astype(np.int32, copy=False), lengths)
        return cls(np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(lengths.sum())), lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, rows: Sequence[int] | np.ndarray, *, max_tokens: int | None = None) -> "Ragged":
        """Rows ``rows`` (repeats allowed), each cut to its first ``max_tokens`` ids."""
        rows = np.asarray(rows, np.int64)
        lengths = self.lengths[rows] if max_tokens is None else np.minimum(self.lengths[rows], max_tokens)
        return Ragged(self.flat[np.repeat(self.starts[rows], lengths) + _within(lengths)], lengths)

    def place(self, out: np.ndarray, column: int | np.ndarray, keep: np.ndarray) -> None:
        """``out[i, column_i + j] = row_i[j]`` for ``j < keep_i`` (``keep_i <= lengths_i``)."""
        j = _within(keep)
        rows = np.repeat(np.arange(len(keep)), keep)
        columns = np.repeat(np.broadcast_to(column, keep.shape), keep) + j
        out[rows, columns] = self.flat[np.repeat(self.starts, keep) + j]


class TextTokenizer:
    """Encodes queries, documents and (query, doc) pairs to fixed-length int32 arrays."""

    def __init__(self, path: str | os.PathLike | None = None, *, query_length: int = 32, doc_length: int = 180,
                 pair_length: int | None = None, colbert: bool = False, q_marker: str = "[unused0]",
                 d_marker: str = "[unused1]"):
        if path is None:
            from ranking_jax.assets import minilm_path
            path = minilm_path() / "tokenizer.json"
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]  # which vocabulary token ids refer to
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()  # tokenizer.json files may carry fixed padding/truncation; we pad ourselves
        self._tok.no_truncation()
        self.query_length, self.doc_length = query_length, doc_length
        self.pair_length = pair_length or query_length + doc_length - 1
        self.colbert = colbert
        single, pair = self._tok.encode("", add_special_tokens=True), self._tok.encode("", "", add_special_tokens=True)
        if len(single.ids) != 2 or len(pair.ids) < 3:
            raise ValueError(f"{path}: the tokenizer's post-processor adds {single.tokens} to a text; an encoder "
                             "tokenizer wraps it in a start and an end token ([CLS] ... [SEP] or <s> ... </s>)")
        self.cls, self.sep = single.ids
        self.middle, self.middle_types = pair.ids[1:-1], pair.type_ids[1:-1]  # [SEP] (BERT) or </s></s> (MPNet)
        self.doc_type = pair.type_ids[-1]
        self.pad, self.mask_id = self._id("[PAD]", "<pad>"), self._id("[MASK]", "<mask>")
        self.q_marker, self.d_marker = self._id(q_marker), self._id(d_marker)
        minimum = 3 if colbert else 2
        if min(query_length, doc_length) <= minimum or self.pair_length < 4:
            raise ValueError(f"token lengths too small: query_length={query_length}, doc_length={doc_length}, "
                             f"pair_length={self.pair_length} must leave room for [CLS]/markers/[SEP]")

    def _id(self, *tokens: str) -> int:
        """The id of the first of ``tokens`` the vocabulary has."""
        for token in tokens:
            i = self._tok.token_to_id(token)
            if i is not None:
                return i
        raise ValueError(f"the tokenizer has none of {list(tokens)}; is it a BERT or MPNet tokenizer?")

    def tokens(self, texts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        """Word-piece ids of each text, without special tokens and without truncation; already tokenized
        items (id sequences, e.g. from a :class:`TokenTable`) pass through."""
        if len(texts) and not isinstance(texts[0], str):
            return [t.tolist() if isinstance(t, np.ndarray) else list(t) for t in texts]
        return self._word_pieces(texts)

    def _word_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def ragged(self, texts: Sequence[str] | Sequence[Sequence[int]] | Ragged) -> Ragged:
        """:meth:`tokens` as a :class:`Ragged` (which passes through)."""
        if isinstance(texts, Ragged):
            return texts
        if len(texts) and not isinstance(texts[0], str):
            return Ragged.of(texts)
        return Ragged.of(self._word_pieces(texts))

    def encode(self, texts: Sequence[str] | Sequence[Sequence[int]] | Ragged, *, length: int,
               marker: int | None = None, pad_with_mask: bool = False) -> dict[str, np.ndarray]:
        """``[CLS] (marker) text [SEP]`` per text, cut and padded to ``length``: {"ids", "mask"} int32 [n, length]."""
        toks = self.ragged(texts)
        prefix = [self.cls] + ([marker] if marker is not None else [])
        room = length - len(prefix) - 1
        if room < 0:
            raise ValueError(f"length {length} leaves no room for [CLS]{' + marker' if marker is not None else ''} "
                             "+ [SEP]")
        keep = np.minimum(toks.lengths, room)
        sep = len(prefix) + keep
        ids = np.full((len(toks), length), self.mask_id if pad_with_mask else self.pad, np.int32)
        ids[:, :len(prefix)] = prefix
        toks.place(ids, len(prefix), keep)
        ids[np.arange(len(toks)), sep] = self.sep
        if pad_with_mask:
            mask = np.ones((len(toks), length), np.int32)
        else:
            mask = (np.arange(length) <= sep[:, None]).astype(np.int32)
        return {"ids": ids, "mask": mask}

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Queries [n, query_length]; ColBERT: [Q] marker and [MASK] augmentation."""
        return self.encode(texts, length=self.query_length, marker=self.q_marker if self.colbert else None,
                           pad_with_mask=self.colbert)

    def encode_docs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Documents [n, doc_length]; ColBERT: [D] marker."""
        return self.encode(texts, length=self.doc_length, marker=self.d_marker if self.colbert else None)

    def encode_pairs(self, queries: Sequence[str] | Ragged, docs: Sequence[str] | Ragged) -> dict[str, np.ndarray]:
        """``[CLS] q [SEP] d [SEP]`` [n, pair_length] (the tokenizer's pair template): {"ids", "mask",
        "type_ids"}; the query keeps at most ``query_length - 2`` tokens, the document fills the rest."""
        if len(queries) != len(docs):
            raise ValueError(f"encode_pairs got {len(queries)} queries and {len(docs)} docs")
        q, d = self.ragged(queries), self.ragged(docs)
        n, length, m = len(q), self.pair_length, len(self.middle)
        q_keep = np.minimum(q.lengths, min(self.query_length - 2, length - m - 3))
        d_start = 1 + q_keep + m  # [CLS] q middle
        d_keep = np.minimum(d.lengths, length - d_start - 1)
        end = d_start + d_keep  # the final [SEP]
        ids = np.full((n, length), self.pad, np.int32)
        types = np.zeros((n, length), np.int32)
        ids[:, 0] = self.cls
        q.place(ids, 1, q_keep)
        rows, cols = np.arange(n), np.arange(length)
        for j, (token, kind) in enumerate(zip(self.middle, self.middle_types)):
            ids[rows, 1 + q_keep + j], types[rows, 1 + q_keep + j] = token, kind
        d.place(ids, d_start, d_keep)
        ids[rows, end] = self.sep
        mask = cols <= end[:, None]
        types[mask & (cols >= d_start[:, None])] = self.doc_type
        return {"ids": ids, "mask": mask.astype(np.int32), "type_ids": types}


class TokenTable:
    """Word-piece ids of all texts of a split, cut to ``max_tokens``, tokenized once and stored as one
    :class:`Ragged`; ``table.ragged(rows)`` (or ``table[rows]``) is what :class:`TextTokenizer` encodes instead
    of the texts.

    Cutting the ids is the same as encoding the full text and truncating, so batches are unchanged; the
    pipelines then spend no time in the tokenizer (documents are re-tokenized every epoch otherwise).
    """

    def __init__(self, tokenizer: TextTokenizer, texts: Sequence[str], *, max_tokens: int, chunk: int = 8192):
        self.digest = tokenizer.digest
        parts = [tokenizer.ragged(texts[start:start + chunk]) for start in range(0, len(texts), chunk)]
        parts = [p.take(np.arange(len(p)), max_tokens=max_tokens) for p in parts]
        self.rows = Ragged(np.concatenate([p.flat for p in parts]) if parts else np.zeros(0, np.int32),
                           np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: Sequence[int]) -> list[np.ndarray]:
        return [self.rows.flat[s:s + n] for s, n in zip(self.rows.starts[rows], self.rows.lengths[rows])]

    def ragged(self, rows: Sequence[int] | np.ndarray) -> Ragged:
        """The ids of ``rows`` as a :class:`Ragged` (one vectorized gather)."""
        return self.rows.take(rows)
