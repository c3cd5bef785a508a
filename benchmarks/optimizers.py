"""Step time of SAM, ASAM and TRAM against their base optimizer (AdamW) on the MiniLM cross-encoder train step.

The model is ``ranking_jax.models.cross_encoder`` at all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads,
vocabulary 30522; random init, float32), scoring ``[queries, list, length]`` token pairs with
``losses.softmax_loss`` over each list. Every case is one jitted train step with the state donated:

* ``adamw``           value_and_grad + AdamW (the base; 1 forward/backward)
* ``2 grads (floor)`` two dependent value_and_grads + AdamW: the cost floor of any two-pass method
* ``sam`` / ``asam``  ranking_jax.optim.sam around the same AdamW (2 forward/backward)
* ``tram (prev)``     ranking_jax.optim.tram, target θ_{t−1} (3 forward / 2 backward)

Each case is compiled once, then timed ``--repeat`` times, cycling through the cases so that load changes hit
all alike; medians are reported with ``ratio = case / adamw``. Goals: SAM ≤ 2.05×, TRAM ≤ 2.3×.

    .venv/bin/python benchmarks/optimizers.py [--queries 2] [--list-size 4] [--length 128] [--repeat 10]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ranking_jax import losses, optim
from ranking_jax.models import BertConfig, cross_encoder


def make_batch(queries: int, list_size: int, length: int, vocab: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (queries, list_size, length)).astype(np.int32)
    lengths = rng.integers(length // 2, length + 1, (queries, list_size))
    mask = (np.arange(length) < lengths[..., None]).astype(np.int32)
    type_ids = (np.arange(length) >= length // 4).astype(np.int32) * mask
    labels = np.zeros((queries, list_size), np.float32)
    labels[:, 0] = 1.0
    return {"pair_ids": jnp.asarray(ids * mask), "pair_mask": jnp.asarray(mask),
            "pair_type_ids": jnp.asarray(type_ids), "labels": jnp.asarray(labels),
            "mask": jnp.ones((queries, list_size), bool)}


def make_step(name: str, graphdef, rest, batch):
    base = optax.adamw(1e-5, weight_decay=0.01)
    tx = {"adamw": base, "2 grads (floor)": base, "sam": optim.sam(base, 0.05),
          "asam": optim.sam(base, 0.5, adaptive=True), "tram (prev)": optim.tram(base, target="prev")}[name]

    def scores(p, b):
        return nnx.merge(graphdef, p, rest)(b)

    def loss(p, b):
        s = scores(p, b)
        return losses.softmax_loss(s, b["labels"], where=b["mask"]), s

    def step(p, opt_state, b):
        (value, s), g = jax.value_and_grad(loss, has_aux=True)(p, b)
        grad_fn = lambda q: jax.grad(lambda r: loss(r, b)[0])(q)  # noqa: E731
        if name == "2 grads (floor)":  # a second gradient at a point that depends on the first
            g = grad_fn(jax.tree.map(lambda w, gi: w + 1e-3 * gi, p, g))
        u, opt_state = tx.update(g, opt_state, p, grad_fn=grad_fn, outputs=s, outputs_mask=b["mask"],
                                 outputs_fn=lambda q: scores(q, b))
        return optax.apply_updates(p, u), opt_state, value

    return tx, jax.jit(step, donate_argnums=(0, 1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--list-size", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    config = BertConfig()  # all-MiniLM-L6-v2's shape
    model = cross_encoder(config=config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    batch = make_batch(args.queries, args.list_size, args.length, config.vocab_size)
    names = ["adamw", "2 grads (floor)", "sam", "asam", "tram (prev)"]
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), {platform.processor() or platform.machine()};"
          f" cross-encoder {config.num_hidden_layers}x{config.hidden_size} ({n_params / 1e6:.1f}M params), batch "
          f"[{args.queries}, {args.list_size}, {args.length}] tokens, median of {args.repeat} jitted steps")
    states, steps = {}, {}
    for name in names:
        tx, step = make_step(name, graphdef, rest, batch)
        p_copy = jax.tree.map(jnp.copy, params)
        states[name] = (p_copy, tx.init(p_copy))
        t = time.perf_counter()
        out = jax.block_until_ready(step(*states[name], batch))  # compile + first step
        states[name], steps[name] = out[:2], step
        if not np.isfinite(float(out[2])):
            raise RuntimeError(f"{name}: non-finite loss {float(out[2])}")
        print(f"  compiled {name:16s} in {time.perf_counter() - t:6.1f} s")
    times = {name: [] for name in names}
    for _ in range(args.repeat):
        for name in names:
            t = time.perf_counter()
            out = jax.block_until_ready(steps[name](*states[name], batch))
            times[name].append(time.perf_counter() - t)
            states[name] = out[:2]
    base = statistics.median(times["adamw"])
    print(f"{'case':18s} {'median ms':>10s} {'min ms':>9s} {'ratio':>7s}")
    for name in names:
        med = statistics.median(times[name])
        print(f"{name:18s} {1e3 * med:10.1f} {1e3 * min(times[name]):9.1f} {med / base:6.2f}x")


if __name__ == "__main__":
    main()
