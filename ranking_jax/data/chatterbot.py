"""The quickstart's embedded collection: ChatterBot English corpus as a BEIR-format Q->A retrieval task.

``chatterbot-corpus`` 1.3.3 (PyPI, BSD) ships 2,026 human-written English conversations in 21
categories. Each conversation's first utterance is a query; the reply that follows it is relevant
(score 1). Identical utterances are merged into one query and identical replies into one document,
so a query asked in several conversations has every reply it received as a relevant document
(749 queries, 871 documents, 898 judged pairs; 20% of queries, 214 pairs, are test). Queries are split into train/test by a hash of
their id (stable across machines and Python versions).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pathlib

PACKAGE = "chatterbot-corpus"
VERSION = "1.3.3"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"


def _english_dir() -> pathlib.Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise ImportError(f"the quickstart collection needs {PACKAGE}: {INSTALL}  (or run `make quickstart`)") \
            from None
    return pathlib.Path(os.path.dirname(chatterbot_corpus.__file__)) / "data" / "english"


def _split(qid: str, test_fraction: float) -> str:
    h = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def write_beir(out_dir: str | pathlib.Path, *, test_fraction: float = 0.2) -> pathlib.Path:
    """Writes corpus.jsonl, queries.jsonl and qrels/{train,test}.tsv; returns ``out_dir``.

    Idempotent: an existing complete conversion is reused.
    """
    import yaml

    out = pathlib.Path(out_dir)
    done = out / ".complete"
    if done.exists():
        return out
    queries: dict[str, str] = {}
    docs: dict[str, str] = {}
    qrels: set[tuple[str, str]] = set()
    files = sorted(glob.glob(str(_english_dir() / "*.yml")))
    if not files:
        raise FileNotFoundError(f"no *.yml in {_english_dir()}; reinstall with {INSTALL} --force-reinstall")
    for path in files:
        for i, conv in enumerate(yaml.safe_load(open(path, encoding="utf-8"))["conversations"]):
            if len(conv) < 2:
                raise ValueError(f"{path}: conversation {i} has {len(conv)} turn(s); expected at least 2")
            q, a = (" ".join(str(t).split()) for t in conv[:2])
            qid = queries.setdefault(q, f"q{len(queries)}")
            did = docs.setdefault(a, f"d{len(docs)}")
            qrels.add((qid, did))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for text, did in docs.items():
            f.write(json.dumps({"_id": did, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        for text, qid in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split in ("train", "test"):
        with open(out / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in sorted(qrels, key=lambda p: (int(p[0][1:]), int(p[1][1:]))):
                if _split(qid, test_fraction) == split:
                    f.write(f"{qid}\t{did}\t1\n")
    (out / "SOURCE.md").write_text(__doc__ + f"\nBuilt from {PACKAGE}=={VERSION}.\n")
    done.touch()
    return out
