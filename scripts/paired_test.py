"""Paired t-test of two runs' per-query values (the ``RUN.per_query.json`` files evaluators write).

    python scripts/paired_test.py A.run.per_query.json B.run.per_query.json [--measure nDCG@10]

Prints each run's mean and ``mean(A - B)``, t, p and the minimum detectable difference (power 0.8) over the
queries both files hold (:func:`ranking_jax.stats.paired_t`); refuses files whose query sets differ (a paired test
over a subset would hide the queries one run lacks).
"""

import argparse
import json
import pathlib

import numpy as np

from ranking_jax.stats import paired_t


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=pathlib.Path)
    parser.add_argument("b", type=pathlib.Path)
    parser.add_argument("--measure", default="nDCG@10")
    args = parser.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in (args.a, args.b)]
    if runs[0].keys() != runs[1].keys():
        only = sorted(runs[0].keys() ^ runs[1].keys())
        raise SystemExit(f"{args.a} and {args.b} hold different queries ({len(only)} in one only, e.g. {only[:3]})")
    queries = sorted(runs[0])
    try:
        a, b = (np.array([r[q][args.measure] for q in queries]) for r in runs)
    except KeyError:
        raise SystemExit(f"--measure {args.measure!r} is not in both files; they hold {sorted(runs[0][queries[0]])}")
    test = paired_t(a, b)
    out = {"queries": len(queries), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": test.diff,
           "t": test.t, "p": test.p, "mde": test.mde}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
