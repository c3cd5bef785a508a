"""BM25 first stage over a prepared BEIR collection: a TREC run of candidates, optionally hard-negative triples.

    .venv/bin/python scripts/prepare_bm25_run.py --data_dir /tmp/tfds --config scifact \\
        --manual_dir ../shared/data --split train --k 1000 --out runs/scifact.train.bm25.trec \\
        [--triples runs/scifact.train.triples.tsv --per_query 8 --depth 100]

The run (``qid Q0 docid rank score tag``) holds the top ``--k`` matching documents of every query of
``--split`` (``ranking_jax.data.BM25``: Lucene BM25, Porter-stemmed, k1/b as given). It is the candidate
list for re-ranking (``data.eval_lists``) and the negative pool for training (``data.train_lists``).
``--triples`` also writes ``qid<TAB>pid_pos<TAB>pid_neg`` lines (``data.hard_negative_triples``: per query
``--per_query`` pairs of a judged positive and a negative from the top ``--depth`` candidates), the input
of ``scripts/score_teacher.py --triples``.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run without installing


def main(argv=None) -> None:
    from ranking_jax import data

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", required=True, help="tfds data dir")
    p.add_argument("--config", required=True, help="beir config, e.g. scifact, cranfield")
    p.add_argument("--manual_dir", default=None, help="folder with the BEIR files (offline)")
    p.add_argument("--split", default="test", help="qrels split whose queries are searched")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--k1", type=float, default=0.9)
    p.add_argument("--b", type=float, default=0.4)
    p.add_argument("--out", required=True, help="TREC run file to write")
    p.add_argument("--triples", default=None, help="also write hard-negative triples here")
    p.add_argument("--per_query", type=int, default=8)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    src = data.prepare(data.Beir, config=args.config, data_dir=args.data_dir,
                       manual_dir=args.manual_dir).as_data_source()
    corpus, queries = src["corpus"], src["queries"]
    qrels = data.qrels_from_split(src[args.split])
    rows = list(qrels)
    top, scores = data.BM25(k1=args.k1, b=args.b).index(data.texts(corpus)).search(
        data.Texts(queries)[rows], k=args.k)
    doc_ids, query_ids = data.id_list(corpus, "doc_id"), data.id_list(queries, "query_id")
    run = {query_ids[r]: {doc_ids[d]: float(v) for d, v in zip(t[t >= 0], s[t >= 0])}
           for r, t, s in zip(rows, top, scores)}
    path = data.write_run(args.out, run, tag=f"bm25_k1={args.k1}_b={args.b}")
    print(f"wrote {path}: {len(rows)} queries of split {args.split!r}, top {args.k} "
          f"(mean {np.mean((top >= 0).sum(1)):.1f} matching docs per query)")
    if args.triples:
        triples = data.hard_negative_triples(qrels, data.candidates_from_search(rows, top), per_query=args.per_query,
                                             depth=args.depth, seed=args.seed)
        out = pathlib.Path(args.triples)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{query_ids[q]}\t{doc_ids[p]}\t{doc_ids[n]}\n" for q, p, n in triples))
        print(f"wrote {out}: {len(triples)} (query, positive, hard negative) triples")


if __name__ == "__main__":
    main()
