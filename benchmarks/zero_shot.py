"""Zero-shot dense retrieval of the installed encoders on the BEIR collections in ../shared/data.

    .venv/bin/python benchmarks/zero_shot.py [--models minilm,mpnet] [--collections scifact,cranfield]
        [--max-length N] [--out DIR]

Each model encodes as sentence-transformers does with its own modules (:class:`ranking_jax.TextEncoder`:
all-MiniLM-L6-v2 at 256 tokens, all-mpnet-base-v2 at 384, mean pooling, normalized) the documents (BEIR's
``title + " " + text``) and the judged test queries, then retrieves the exact top 100 by cosine; nDCG@10 and
RR@10 are trec_eval's (:mod:`ranking_jax.metrics.trec`). Per-query values go to ``OUT/<collection>.<model>.json``,
so two models can be compared with ``scripts/paired_test.py``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from _timing import cpu_description

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def collection(folder: pathlib.Path):
    from ranking_jax.data import formats
    docs = [(d["_id"], (d.get("title", "") + " " + d.get("text", "")).strip())
            for _, d in formats.read_jsonl(folder / "corpus.jsonl")]
    qrels = formats.read_qrels(folder / "qrels" / "test.tsv")
    queries = [(d["_id"], d["text"]) for _, d in formats.read_jsonl(folder / "queries.jsonl") if d["_id"] in qrels]
    return docs, queries, qrels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="minilm,mpnet")
    p.add_argument("--collections", default="scifact,cranfield")
    p.add_argument("--max-length", type=int, default=None, help="default: each model's max_seq_length")
    p.add_argument("--out", default="workdirs/zero_shot")
    args = p.parse_args()
    import jax.numpy as jnp

    from ranking_jax import TextEncoder, scoring
    from ranking_jax.metrics import trec
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {cpu_description()}")
    rows = []
    for name in args.collections.split(","):
        docs, queries, qrels = collection(ROOT.parent / "shared" / "data" / name)
        for model in args.models.split(","):
            t = time.perf_counter()
            enc = TextEncoder(model, batch_size=32, max_length=args.max_length)
            d = enc.encode([text for _, text in docs])
            q = enc.encode([text for _, text in queries])
            scores, top = scoring.exact_topk(jnp.asarray(q), jnp.asarray(d), 100)
            run = {qid: {docs[int(j)][0]: float(s) for j, s in zip(top[i], scores[i])}
                   for i, (qid, _) in enumerate(queries)}
            per_query = trec.evaluate_per_query(qrels, run, ["nDCG@10", "RR@10"])
            (out / f"{name}.{model}.json").write_text(json.dumps(per_query) + "\n")
            means = trec.aggregate(per_query)
            rows.append((name, model, enc.max_length, len(docs), len(queries), means["nDCG@10"], means["RR@10"],
                         time.perf_counter() - t))
            print(f"{name} {model}: nDCG@10 {means['nDCG@10']:.4f} ({rows[-1][-1]:.0f} s)", flush=True)
    print("\n| collection | model | max tokens | documents | queries | nDCG@10 | RR@10 | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4]} | {r[5]:.4f} | {r[6]:.4f} | {r[7]:.0f} |")


if __name__ == "__main__":
    main()
