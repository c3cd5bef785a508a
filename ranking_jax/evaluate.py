"""``python -m ranking_jax.evaluate``: a TREC run against qrels, with trec_eval semantics.

    python -m ranking_jax.evaluate --qrels QRELS --run RUN --metrics "nDCG@10 RR@10 AP R@100 P@5" [--per-query]

prints a JSON object of means over the judged queries (with ``--per-query``: ``{"mean": ..., "per_query":
{query_id: ...}}``). Judged queries missing from the run score 0 and run queries without judgments are skipped;
how many of each is reported on stderr. The evaluators that runs use are :mod:`ranking_jax.evaluators`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import numpy as np

from ranking_jax.data import formats
from ranking_jax.metrics import trec


def _short(values: dict) -> dict:
    """Each value as the shortest decimal that reads back as the same float32 (the metrics compute in float32:
    0.2, not 0.20000000298023224)."""
    return {k: float(str(np.float32(v))) for k, v in values.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluates a TREC run against qrels and prints JSON; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m ranking_jax.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qrels", required=True, help="qrels file: 'QUERY_ID ITERATION DOC_ID RELEVANCE' lines")
    parser.add_argument("--run", required=True, help="run file: 'QUERY_ID Q0 DOC_ID RANK SCORE TAG' lines")
    parser.add_argument("--metrics", default="nDCG@10 RR@10 AP R@100 P@5",
                        help="ir-measures names separated by spaces or commas (default: %(default)s)")
    parser.add_argument("--per-query", action="store_true", help="also print each judged query's values")
    args = parser.parse_args(argv)
    try:
        measures = trec.parse_measures(args.metrics)
        qrels, run = formats.read_qrels(args.qrels), formats.read_run(args.run)
        per_query = trec.evaluate_per_query(qrels, run, measures)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    means = trec.aggregate(per_query)
    missing, unjudged = sorted(set(qrels) - set(run)), sorted(set(run) - set(qrels))
    print(f"evaluated {len(qrels)} judged queries; {len(missing)} judged queries absent from the run count as 0 "
          f"(ir-measures default); {len(unjudged)} run queries without judgments skipped", file=sys.stderr)
    means, per_query = _short(means), {q: _short(v) for q, v in per_query.items()}
    print(json.dumps({"mean": means, "per_query": per_query} if args.per_query else means, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
