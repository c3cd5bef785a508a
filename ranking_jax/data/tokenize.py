"""Fixed-length BERT-style token encodings with a Hugging Face ``tokenizer.json`` (``tokenizers``).

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

import os
import pathlib
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

__all__ = ["TextTokenizer", "TokenTable"]


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
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()  # tokenizer.json files may carry fixed padding/truncation; we pad ourselves
        self._tok.no_truncation()
        self.query_length, self.doc_length = query_length, doc_length
        self.pair_length = pair_length or query_length + doc_length - 1
        self.colbert = colbert
        self.cls, self.sep, self.pad, self.mask_id = (self._id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]"))
        self.q_marker, self.d_marker = self._id(q_marker), self._id(d_marker)
        minimum = 3 if colbert else 2
        if min(query_length, doc_length) <= minimum or self.pair_length < 4:
            raise ValueError(f"token lengths too small: query_length={query_length}, doc_length={doc_length}, "
                             f"pair_length={self.pair_length} must leave room for [CLS]/markers/[SEP]")

    def _id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise ValueError(f"the tokenizer has no {token!r} token; is it a BERT-family (WordPiece) tokenizer?")
        return i

    def tokens(self, texts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        """Word-piece ids of each text, without special tokens and without truncation; already tokenized
        items (id sequences, e.g. from a :class:`TokenTable`) pass through."""
        if len(texts) and not isinstance(texts[0], str):
            return [t.tolist() if isinstance(t, np.ndarray) else list(t) for t in texts]
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str] | Sequence[Sequence[int]], *, length: int, marker: int | None = None,
               pad_with_mask: bool = False) -> dict[str, np.ndarray]:
        """``[CLS] (marker) text [SEP]`` per text, cut and padded to ``length``: {"ids", "mask"} int32 [n, length]."""
        prefix = [self.cls] + ([marker] if marker is not None else [])
        room = length - len(prefix) - 1
        ids = np.full((len(texts), length), self.mask_id if pad_with_mask else self.pad, np.int32)
        mask = np.zeros((len(texts), length), np.int32)
        for i, toks in enumerate(self.tokens(texts)):
            row = prefix + toks[:room] + [self.sep]
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        if pad_with_mask:
            mask[:] = 1
        return {"ids": ids, "mask": mask}

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Queries [n, query_length]; ColBERT: [Q] marker and [MASK] augmentation."""
        return self.encode(texts, length=self.query_length, marker=self.q_marker if self.colbert else None,
                           pad_with_mask=self.colbert)

    def encode_docs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Documents [n, doc_length]; ColBERT: [D] marker."""
        return self.encode(texts, length=self.doc_length, marker=self.d_marker if self.colbert else None)

    def encode_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> dict[str, np.ndarray]:
        """``[CLS] q [SEP] d [SEP]`` [n, pair_length]: {"ids", "mask", "type_ids"}."""
        if len(queries) != len(docs):
            raise ValueError(f"encode_pairs got {len(queries)} queries and {len(docs)} docs")
        n, length = len(queries), self.pair_length
        ids = np.full((n, length), self.pad, np.int32)
        mask, type_ids = np.zeros((n, length), np.int32), np.zeros((n, length), np.int32)
        for i, (q, d) in enumerate(zip(self.tokens(queries), self.tokens(docs))):
            first = [self.cls] + q[:min(self.query_length - 2, length - 4)] + [self.sep]
            second = d[:length - len(first) - 1] + [self.sep]
            ids[i, :len(first) + len(second)] = first + second
            mask[i, :len(first) + len(second)] = 1
            type_ids[i, len(first):len(first) + len(second)] = 1
        return {"ids": ids, "mask": mask, "type_ids": type_ids}


class TokenTable:
    """Word-piece ids of all texts of a split, cut to ``max_tokens``, tokenized once and stored ragged
    (flat int32 + offsets); ``table[rows]`` is what :class:`TextTokenizer` encodes instead of the texts.

    Cutting the ids is the same as encoding the full text and truncating, so batches are unchanged; the
    pipelines then spend no time in the tokenizer (documents are re-tokenized every epoch otherwise).
    """

    def __init__(self, tokenizer: TextTokenizer, texts: Sequence[str], *, max_tokens: int, chunk: int = 8192):
        ids, lengths = [], []
        for start in range(0, len(texts), chunk):
            for toks in tokenizer.tokens(texts[start:start + chunk]):
                ids.append(np.asarray(toks[:max_tokens], np.int32))
                lengths.append(len(ids[-1]))
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, rows: Sequence[int]) -> list[np.ndarray]:
        return [self.ids[self.offsets[r]:self.offsets[r + 1]] for r in rows]
