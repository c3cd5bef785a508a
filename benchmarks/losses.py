"""Ranking losses: ranking_jax.losses vs rax 0.4.0, jitted forward + backward, on a [1024, 200] batch, one run.

Every loss Rax has (plus the lambdaweighted pairwise losses and ``approx_t12n(ndcg_metric)``) gets the same inputs
(normal scores, graded labels 0..4, 10% of the items masked with ``where``). Each case is ``jax.jit(
jax.value_and_grad(loss))``; values and gradients are checked to agree before timing; then each is timed
``--repeat`` times, alternating the two libraries so that load changes hit both alike. Medians are reported with
``ratio = ranking_jax / rax`` (below 1: ours is faster). Metrics are benchmarked in ``benchmarks/metrics.py``.

    .venv/bin/python benchmarks/losses.py [--batch 1024] [--size 200] [--repeat 10] [--only NAME]

Rax 0.4.0's ``approx_t12n`` needs ``jax.util.wraps`` (removed in JAX 0.7); this script puts a shim in for the
Rax side only.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import platform
import statistics
import sys
import time
import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import rax  # noqa: E402

import ranking_jax.losses as losses  # noqa: E402

RAX_LOSSES = ["pointwise_mse_loss", "pointwise_sigmoid_loss", "pairwise_hinge_loss", "pairwise_logistic_loss",
              "pairwise_mse_loss", "pairwise_qr_loss", "pairwise_soft_zero_one_loss", "softmax_loss",
              "poly1_softmax_loss", "unique_softmax_loss", "listmle_loss"]


def _old_jax_util_wraps(wrapped, namestr=None, docstr=None, **kwargs):
    def wrapper(fun):
        name = getattr(wrapped, "__name__", "fn")
        fun.__name__ = name if namestr is None else namestr.format(fun=name)
        fun.__doc__ = docstr.format(fun=name, doc=wrapped.__doc__ or "", **kwargs) if docstr else wrapped.__doc__
        return fun

    return wrapper


def cases():
    for name in RAX_LOSSES:
        yield name, getattr(losses, name), getattr(rax, name)
    for lw in ("labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"):
        yield (f"pairwise_logistic_loss(lambdaweight_fn={lw})",
               functools.partial(losses.pairwise_logistic_loss, lambdaweight_fn=getattr(losses, lw)),
               functools.partial(rax.pairwise_logistic_loss, lambdaweight_fn=getattr(rax, lw)))
    if not hasattr(getattr(jax, "util", None), "wraps"):
        jax.util = types.SimpleNamespace(wraps=_old_jax_util_wraps)
    from rax._src import t12n as rax_t12n
    yield ("approx_t12n(ndcg_metric) (rax metric)", losses.approx_t12n(rax.ndcg_metric),
           rax_t12n.approx_t12n(rax.ndcg_metric))
    yield "approx_ndcg_loss vs approx_t12n(ndcg)", losses.approx_ndcg_loss, rax_t12n.approx_t12n(rax.ndcg_metric)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=(args.batch, args.size)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 5, (args.batch, args.size)).astype(np.float32))
    where = jnp.asarray(rng.random((args.batch, args.size)) > 0.1)
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}), "
          f"{platform.processor() or platform.machine()}; lists [{args.batch}, {args.size}], "
          f"median of {args.repeat} jitted value_and_grad calls")
    print(f"{'loss':64s} {'ranking_jax ms':>15s} {'rax ms':>10s} {'ratio':>7s}")
    for label, ours, theirs in cases():
        if args.only and args.only not in label:
            continue
        fns = []
        for fn in (ours, theirs):
            y = labels / 4.0 if "sigmoid" in label else labels
            fns.append(jax.jit(jax.value_and_grad(lambda s, y, w, fn=fn: fn(s, y, where=w))))
        results = [jax.block_until_ready(f(scores, y, where)) for f in fns]
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, err_msg=label)
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-7, err_msg=label)
        times = [[], []]
        for _ in range(args.repeat):
            for k, f in enumerate(fns):
                start = time.perf_counter()
                jax.block_until_ready(f(scores, y, where))
                times[k].append(time.perf_counter() - start)
        ours_ms, rax_ms = (1e3 * statistics.median(t) for t in times)
        print(f"{label:64s} {ours_ms:15.2f} {rax_ms:10.2f} {ours_ms / rax_ms:7.2f}", flush=True)


if __name__ == "__main__":
    main()
