"""Input pipeline throughput vs. the cross-encoder train step's consumption rate (goal: input >= 5x step).

    .venv/bin/python benchmarks/pipeline.py [--data ../shared/data] [--threads 0,2] [--model minilm|minilm_shape|small]

Data: SciFact train queries (809) with BM25 top-100 candidates as the negative pool
(``lists.train_lists``); batches of ``--batch_size`` queries x ``--list_size`` (1 positive + sampled
negatives), cross-encoder pairs ``[CLS] q [SEP] d [SEP]`` of ``query_length + doc_length - 1`` tokens.

Measured, as query-document pairs per second (median of ``--repeat`` timed windows):
  pipeline  the grain iterator (``Pipeline.iterator(num_threads=T)``) for each T in ``--threads``
  step      ``ranking_jax.train.make_train_step`` (softmax loss, AdamW) of a cross-encoder on the same
            batch shapes, on all local devices (a 1-axis data mesh), including the host->device copy
  loop      the two together: the iterator feeding the step (what training sees)
``ratio = pipeline / step``; the goal is >= 5.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

from _timing import timings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run without installing


def _median_rate(fn, *, items_per_call: int, calls: int, repeat: int) -> float:
    """Median items/s over ``repeat`` windows of ``calls`` calls of ``fn()``."""
    def window():
        for _ in range(calls):
            fn()

    times, _ = timings(window, iters=repeat)
    return statistics.median(items_per_call * calls / t for t in times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--list_size", type=int, default=8)
    p.add_argument("--query_length", type=int, default=32)
    p.add_argument("--doc_length", type=int, default=180)
    p.add_argument("--threads", default="0,2")
    p.add_argument("--model", default="minilm", choices=("minilm", "minilm_shape", "small"),
                   help="minilm: all-MiniLM-L6-v2 weights (6 layers x 384); minilm_shape: the same architecture, "
                        "random init (same cost, no weights needed); small: 2 layers x 128 hidden")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the installed MiniLM's)")
    p.add_argument("--batches", type=int, default=20, help="pipeline batches per timed window")
    p.add_argument("--steps", type=int, default=5, help="train steps per timed window")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    import jax
    import optax
    import tensorflow_datasets as tfds

    from ranking_jax import data, models, objectives, sharding, train

    tfds.disable_progress_bar()
    pairs = args.batch_size * args.list_size
    with tempfile.TemporaryDirectory() as tmp:
        src = data.prepare(data.Beir, config="scifact", data_dir=tmp,
                           manual_dir=os.path.join(args.data, "scifact")).as_data_source()
        qrels = data.qrels_from_split(src["train"])
        queries, corpus = data.Texts(src["queries"]), data.Texts(src["corpus"])
        rows = list(qrels)
        top, _ = data.BM25().index(data.texts(src["corpus"])).search(queries[rows], k=100)
        records = data.train_lists(qrels, data.candidates_from_search(rows, top))
    tokenizer = data.TextTokenizer(args.tokenizer, query_length=args.query_length, doc_length=args.doc_length)
    pipe = data.text_pipeline(records, family="cross_encoder", queries=queries, corpus=corpus,
                              batch_size=args.batch_size, list_size=args.list_size, train=True, seed=0,
                              tokenizer=tokenizer, shard=(0, 1))

    pipeline_rates = {}
    for threads in (int(t) for t in args.threads.split(",")):
        it = pipe.iterator(num_threads=threads, prefetch=max(2 * threads, 2))
        for _ in range(3):
            next(it)
        pipeline_rates[threads] = _median_rate(lambda: next(it), items_per_call=pairs, calls=args.batches,
                                               repeat=args.repeat)

    if args.model == "minilm":
        model = models.cross_encoder(pretrained="minilm")
    elif args.model == "minilm_shape":
        model = models.cross_encoder(config=models.BertConfig())
    else:
        model = models.cross_encoder(config={"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                                             "intermediate_size": 512})
    mesh = sharding.make_mesh([("data", -1)])
    rules = sharding.DEFAULT_RULES
    graph, params = train.split_model(model)
    tx = optax.adamw(1e-5)
    state = train.init_state(params, tx, 0, mesh, rules)
    step = train.make_train_step(graph, objectives.parse("losses.softmax_loss"), tx)
    batch = pipe[0]
    with sharding.axis_rules(rules), jax.set_mesh(mesh):
        state, metrics = step(state, sharding.shard_batch(batch, mesh, rules), None)  # compile
        jax.block_until_ready(metrics)

        def one_step():
            nonlocal state
            state, m = step(state, sharding.shard_batch(batch, mesh, rules), None)
            jax.block_until_ready(m["loss"])

        step_rate = _median_rate(one_step, items_per_call=pairs, calls=args.steps, repeat=args.repeat)
        threads = max(pipeline_rates)
        it = pipe.iterator(num_threads=threads, prefetch=max(2 * threads, 2))

        def loop_step():
            nonlocal state
            state, m = step(state, sharding.shard_batch(next(it), mesh, rules), None)
            jax.block_until_ready(m["loss"])

        loop_rate = _median_rate(loop_step, items_per_call=pairs, calls=args.steps, repeat=args.repeat)

    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; host CPUs: {os.cpu_count()}; "
          f"model: {args.model}; batch {args.batch_size} queries x {args.list_size} docs = {pairs} pairs of "
          f"{tokenizer.pair_length} tokens")
    print(f"{'what':<28}{'pairs/s':>12}{'ratio to step':>15}")
    for threads, rate in pipeline_rates.items():
        print(f"{f'pipeline, {threads} threads':<28}{rate:>12.0f}{rate / step_rate:>15.1f}")
    print(f"{'train step':<28}{step_rate:>12.0f}{1.0:>15.1f}")
    print(f"{f'loop (pipeline {max(pipeline_rates)} thr + step)':<28}{loop_rate:>12.0f}{loop_rate / step_rate:>15.2f}")
    best = max(pipeline_rates.values()) / step_rate
    print(f"goal input >= 5x step: {'met' if best >= 5 else 'NOT met'} ({best:.1f}x)")


if __name__ == "__main__":
    main()
