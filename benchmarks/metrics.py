"""Ranking metrics: ranking_jax.metrics vs rax 0.4.0, jitted, on a [1024, 200] batch of lists, one run.

Both get the same inputs (normal scores, graded labels 0..4, 10% of the items masked with ``where``); before
timing, the values are checked to agree. Each case is compiled once, then timed ``--repeat`` times, alternating
the two libraries so that load changes hit both alike; medians are reported with ``speedup = rax / ranking_jax``.

    .venv/bin/python benchmarks/metrics.py [--batch 1024] [--size 200] [--repeat 30]

"several cut-offs" compares one ``ndcg_metric(topn=(1, 5, 10))`` call with three Rax calls in one jitted function.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import rax

import ranking_jax.metrics as metrics

NAMES = ["dcg_metric", "ndcg_metric", "mrr_metric", "ap_metric", "precision_metric", "recall_metric"]


def cases():
    for name in NAMES:
        for topn in (10, None):
            yield f"{name}(topn={topn})", functools.partial(getattr(metrics, name), topn=topn), \
                functools.partial(getattr(rax, name), topn=topn)
    yield "opa_metric", metrics.opa_metric, rax.opa_metric
    yield ("ndcg_metric(topn=(1, 5, 10)) [several cut-offs]",
           functools.partial(metrics.ndcg_metric, topn=(1, 5, 10)),
           lambda s, y, where: jnp.stack([rax.ndcg_metric(s, y, where=where, topn=n) for n in (1, 5, 10)]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=(args.batch, args.size)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 5, (args.batch, args.size)).astype(np.float32))
    where = jnp.asarray(rng.random((args.batch, args.size)) > 0.1)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}), "
          f"{platform.processor() or platform.machine()}; lists [{args.batch}, {args.size}], "
          f"median of {args.repeat} jitted calls")
    print(f"{'metric':52s} {'ranking_jax ms':>15s} {'rax ms':>10s} {'speedup':>8s}")
    for label, ours, theirs in cases():
        ours, theirs = jax.jit(ours), jax.jit(theirs)
        a = jax.block_until_ready(ours(scores, labels, where=where))
        b = jax.block_until_ready(theirs(scores, labels, where=where))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=label)
        times = {ours: [], theirs: []}
        for _ in range(args.repeat):
            for fn in (ours, theirs):
                t = time.perf_counter()
                jax.block_until_ready(fn(scores, labels, where=where))
                times[fn].append(time.perf_counter() - t)
        t_ours, t_rax = (1e3 * statistics.median(times[fn]) for fn in (ours, theirs))
        print(f"{label:52s} {t_ours:15.3f} {t_rax:10.3f} {t_rax / t_ours:7.1f}x")


if __name__ == "__main__":
    main()
