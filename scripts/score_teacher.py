"""Scores (query, d+, d-) triples with a ranking_jax model and writes a Margin-MSE teacher-score file.

Output lines (Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
Knowledge Distillation"): ``pos_score<TAB>neg_score<TAB>qid<TAB>pid_pos<TAB>pid_neg``, readable by
``ranking_jax.data.read_teacher_triples`` and the ``msmarco_passage`` builder's ``teacher_train`` format.

    .venv/bin/python scripts/score_teacher.py --model "models.cross_encoder(pretrained='minilm')" \\
        --config scifact --data_dir /tmp/tfds --manual_dir ../shared/data/scifact \\
        --run runs/scifact.train.bm25.trec --split train --per_query 8 --depth 100 --out teacher.tsv

Triples come from ``--triples FILE`` (``qid<TAB>pid_pos<TAB>pid_neg`` lines) or are drawn from a
candidate run and the split's qrels (``--run``: per query ``--per_query`` pairs of a positive and a
hard negative from the top ``--depth`` candidates; ``ranking_jax.data.hard_negative_triples``).
The model is any registry spec ``models.NAME(...)``, called as ``model(batch) -> scores [B, 2]``.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Iterable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run without installing
from ranking_jax import data  # noqa: E402
from ranking_jax.evaluators import score_triples  # noqa: E402

log = logging.getLogger(__name__)


def read_triples(path, *, queries: data.IdIndex, docs: data.IdIndex) -> list[tuple[int, int, int]]:
    """``qid pid_pos pid_neg`` lines -> index triples; unknown ids are an error naming the line."""
    triples = []
    for n, (qid, pos, neg) in data.read_tsv(path, ("qid", "pid_pos", "pid_neg")):
        missing = [i for i, ids in ((qid, queries), (pos, docs), (neg, docs)) if i not in ids]
        if missing:
            raise data.DataFormatError(path, n, "ids present in the collection's queries and corpus",
                                       f"unknown {missing}")
        triples.append((queries[qid], docs[pos], docs[neg]))
    return triples


def main(argv: Iterable[str] | None = None) -> None:
    from ranking_jax import registry

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="registry spec, e.g. \"models.cross_encoder(pretrained='minilm')\"")
    p.add_argument("--family", default="cross_encoder", choices=data.TEXT_FAMILIES)
    p.add_argument("--builder", default="beir", choices=("beir", "msmarco_passage"))
    p.add_argument("--config", default=None, help="builder config (beir: scifact, cranfield, ...)")
    p.add_argument("--data_dir", required=True, help="cache folder for the built collection (keyed by content)")
    p.add_argument("--manual_dir", default=None)
    p.add_argument("--triples", default=None, help="qid<TAB>pid_pos<TAB>pid_neg file")
    p.add_argument("--run", default=None, help="TREC run with candidates (with --split)")
    p.add_argument("--split", default="train", help="qrels split for --run")
    p.add_argument("--per_query", type=int, default=8)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--query_length", type=int, default=32)
    p.add_argument("--doc_length", type=int, default=180)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if (args.triples is None) == (args.run is None):
        p.error("give exactly one of --triples or --run")
    logging.basicConfig(level=logging.INFO)

    from ml_collections import ConfigDict

    from ranking_jax.tasks.cache import prepared
    builder_cls = data.Beir if args.builder == "beir" else data.MsmarcoPassage
    # built once per content of --manual_dir under --data_dir: two collections never share a build
    source = pathlib.Path(args.manual_dir) if args.manual_dir else f"download:{args.builder}:{args.config}"
    src = prepared(ConfigDict({"data": {"cache_dir": args.data_dir}}), builder_cls, name=args.builder,
                   builder_config=args.config, source=source, manual_dir=args.manual_dir).as_data_source()
    query_ids, doc_ids = data.id_list(src["queries"], "query_id"), data.id_list(src["corpus"], "doc_id")
    qindex, dindex = data.IdIndex(query_ids), data.IdIndex(doc_ids)
    if args.triples:
        triples = read_triples(args.triples, queries=qindex, docs=dindex)
    else:
        candidates = data.candidates_from_run(data.read_run(args.run), queries=qindex, docs=dindex, source=args.run)
        triples = data.hard_negative_triples(data.qrels_from_split(src[args.split]), candidates,
                                             per_query=args.per_query, depth=args.depth, seed=args.seed)
    model = registry.lookup(args.model)()
    tokenizer = data.TextTokenizer(query_length=args.query_length, doc_length=args.doc_length,
                                   colbert=args.family == "colbert")
    scores = score_triples(model, triples, family=args.family, queries=data.Texts(src["queries"]),
                           corpus=data.Texts(src["corpus"]), batch_size=args.batch_size, tokenizer=tokenizer)
    path = data.write_teacher_triples(args.out, triples, scores, query_ids=query_ids, doc_ids=doc_ids)
    print(f"wrote {path}: {len(triples)} triples scored by {args.model}")


if __name__ == "__main__":
    main()
