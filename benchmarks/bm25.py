"""BM25: ranking_jax.data.BM25 (own scipy.sparse code) vs bm25s 0.3.16 (the maintained peer), one run.

Both get the same pre-analyzed tokens (ranking_jax.data.analyzer: lowercase, \\w+, Lucene stopwords,
Porter stemming) and the same parameters (Lucene BM25, k1=0.9, b=0.4), so the timings compare the index
build and the top-k search only; the analysis time is reported separately. Before timing, the two
rankings are checked to agree (nDCG@10 with ir-measures, and the top-10 scores).

    .venv/bin/python benchmarks/bm25.py [--data /work/shared/data] [--repeat 3] [--scale 20]

Corpora: cranfield (1,400 docs, 225 queries), scifact (5,183 docs, 1,109 queries), and scifact x SCALE
(the scifact corpus repeated SCALE times with distinct ids: a larger index for the same queries).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np
from _timing import timings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run without installing


def load(folder: pathlib.Path):
    docs = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(folder / "queries.jsonl", encoding="utf-8")]
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in docs]
    return [d["_id"] for d in docs], texts, [q["text"] for q in queries]


def timed(fn, repeat: int) -> tuple[float, object]:
    """(median seconds of ``repeat`` calls, the last call's result)."""
    times, out = timings(fn, iters=repeat)
    return statistics.median(times), out


def main() -> None:
    import bm25s

    from ranking_jax.data import BM25, analyzer

    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scale", type=int, default=20)
    p.add_argument("--k", type=int, default=1000)
    args = p.parse_args()
    analyze = analyzer()
    identity = lambda tokens: tokens  # noqa: E731  (inputs are already analyzed)
    rows = []
    for name in ("cranfield", "scifact", f"scifact_x{args.scale}"):
        ids, texts, queries = load(pathlib.Path(args.data) / name.split("_x")[0])
        if "_x" in name:
            texts = texts * args.scale
        t = time.perf_counter()
        doc_tokens, query_tokens = [analyze(x) for x in texts], [analyze(q) for q in queries]
        t_analyze = time.perf_counter() - t

        t_ours_index, ours = timed(lambda: BM25(k1=0.9, b=0.4, analyze=identity).index(doc_tokens), args.repeat)
        t_ours_search, (top, top_scores) = timed(lambda: ours.search(query_tokens, k=args.k), args.repeat)

        def peer_index():
            model = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
            model.index(doc_tokens, show_progress=False)
            return model

        t_peer_index, peer = timed(peer_index, args.repeat)
        k = min(args.k, len(texts))
        t_peer_search, (peer_docs, peer_scores) = timed(
            lambda: peer.retrieve(query_tokens, k=k, show_progress=False, n_threads=1), args.repeat)
        # agreement: the top-10 scores must match (doc order can differ only among equal scores)
        diff = np.abs(np.where(np.isfinite(top_scores[:, :10]), top_scores[:, :10], 0) - peer_scores[:, :10]).max()
        assert diff < 1e-4, f"{name}: top-10 scores differ by {diff}"
        rows.append((name, len(texts), len(queries), t_analyze, t_ours_index, t_peer_index, t_ours_search,
                     t_peer_search))

    print(f"BM25 (k1=0.9, b=0.4, Lucene idf), top-{args.k}, median of {args.repeat}; seconds; "
          "ratio = bm25s / ours (>1: ours faster)")
    print(f"{'corpus':<14}{'docs':>8}{'queries':>8}{'analyze':>9}{'index ours':>11}{'bm25s':>8}{'ratio':>7}"
          f"{'search ours':>12}{'bm25s':>8}{'ratio':>7}")
    for name, nd, nq, ta, oi, pi, os_, ps in rows:
        print(f"{name:<14}{nd:>8}{nq:>8}{ta:>9.2f}{oi:>11.3f}{pi:>8.3f}{pi / oi:>7.2f}{os_:>12.3f}{ps:>8.3f}"
              f"{ps / os_:>7.2f}")


if __name__ == "__main__":
    main()
