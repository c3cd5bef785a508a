"""MiniLM-L6 encoders, ranking_jax vs PyTorch on the same weights, shapes and thread count, in one run.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv-bench/bin/python benchmarks/encoders.py [--steps 5] [--texts 1000]
        [--repeats 3] [--model minilm|mpnet] [--kind abstracts|titles] [--skip-train] [--skip-bf16]

(setup: see benchmarks/requirements.txt; the bench venv holds torch + sentence-transformers + ranking_jax's
requirements.) Reports medians and same-run ratios:
  1. peak: jitted float32 2048x2048 matmul GFLOP/s on this CPU (the denominator of "% of peak");
  2. train step of the cross-encoder (BERT_CAT on all-MiniLM-L6-v2): 32 pairs x 256 real tokens, dropout on,
     listwise softmax loss over 4 queries x 8 candidates, AdamW; JAX float32 and bf16-matmul vs torch float32
     (transformers BertModel, sdpa attention); FLOPs = 3 x forward matmul FLOPs (for ranking_jax the ones it
     executes: its last layer computes [CLS] only);
  3. bi-encoder encoding of SciFact abstracts or titles (``--kind``; max 256 tokens, batch 32, mean pooling +
     normalize) with all-MiniLM-L6-v2 or all-mpnet-base-v2 (``--model``), whole process incl. start-up:
     `python -m ranking_jax.encode` vs a sentence-transformers `encode` script; the first ranking_jax run of each
     command fills the persistent compilation cache, so the median is of warm runs and the first is also printed.
Run it with the huge-page tunable the command lines set for themselves (:mod:`ranking_jax.process`), so the
in-process train steps of both frameworks get it too.

    .venv/bin/python benchmarks/encoders.py --forward-only   # no torch needed; XLA_FLAGS=... to compare flags

reports instead where the f32 encoder forward stands against this CPU's matmul rate: the rate of the peak
matmul and of MiniLM's own matmul shapes, the jitted mean-pooled forward on 32 x 256 tokens, and how many tokens
the encoder's length buckets pad on the SciFact texts against exact per-batch padding (sentence-transformers').
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _timing import cpu_description, timings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
B, L, T = 4, 8, 256  # 32 pairs x 256 tokens


def matmul_peak():
    import jax
    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    f = jax.jit(lambda a, b: a @ b)
    ts, _ = timings(lambda: f(a, b).block_until_ready(), warmup=2, iters=9)
    return 2 * n ** 3 / min(ts) / 1e9


def forward_report(path, n_texts: int) -> None:
    import jax
    import jax.numpy as jnp
    from ranking_jax.data.encoding import bucket, encode_queries, jitted
    from ranking_jax.models import pretrained as hf
    from ranking_jax.models.bi_encoder import BiEncoder

    def rate(flops, fn):
        return flops / statistics.median(timings(fn, warmup=1, iters=5)[0]) / 1e9

    mm = jax.jit(lambda a, b: a @ b)
    for m, k, n in [(2048, 2048, 2048), (B * L * T, 384, 384), (B * L * T, 384, 1536), (B * L * T, 1536, 384)]:
        a, b = jnp.ones((m, k)), jnp.ones((k, n))
        print(f"matmul {m}x{k}x{n}: {rate(2 * m * k * n, lambda: mm(a, b).block_until_ready()):.1f} GFLOP/s")
    heads = jnp.ones((B * L * 12, T, 32))
    attn = jax.jit(lambda q, k: jnp.einsum("bqd,bkd->bqk", q, k))
    print(f"attention scores {B * L * 12}x{T}x{T}x32: "
          f"{rate(2 * B * L * 12 * T * T * 32, lambda: attn(heads, heads).block_until_ready()):.1f} GFLOP/s")
    towers = BiEncoder(hf.from_pretrained(path), pooling="mean", similarity="cosine")
    tokens = {"ids": jnp.asarray(np.random.default_rng(0).integers(1000, 30000, (B * L, T)).astype(np.int32)),
              "mask": jnp.ones((B * L, T), jnp.int32)}
    ts, _ = timings(lambda: jitted(encode_queries, towers, tokens).block_until_ready(), warmup=1, iters=5)
    print(f"f32 forward, {B * L} x {T} tokens: median {statistics.median(ts):.2f} s, "
          f"{train_flops() / 3 / statistics.median(ts) / 1e9:.1f} GFLOP/s")
    lengths = np.array([len(e.ids) for e in hf.load_tokenizer(path, max_length=T).encode_batch(encode_texts(n_texts))])
    batches = [np.sort(lengths)[::-1][i:i + 32] for i in range(0, len(lengths), 32)]
    padded = sum(bucket(int(b.max()), largest=T) * 32 for b in batches)
    exact = sum(int(b.max()) * 32 for b in batches)
    print(f"{len(lengths)} SciFact texts, {100 * np.mean(lengths == T):.0f}% at {T} tokens: buckets pad {padded:,} "
          f"tokens, exact per-batch padding {exact:,} (+{100 * (padded / exact - 1):.1f}%)")


def train_flops(cls_only_last: bool = False):
    """3 x forward matmul FLOPs of the 32 x 256 cross-encoder batch; ``cls_only_last``: what ranking_jax
    executes, whose last layer computes keys and values for every token but the rest for [CLS] only."""
    d, f, layers = 384, 1536, 6
    full = 2 * (4 * d * d + 2 * d * f) + 4 * T * d  # per token and layer: projections + MLP + QK^T and PV
    if not cls_only_last:
        return 3 * layers * full * T * B * L
    last = 2 * 2 * d * d * T + full  # K and V projections of all T tokens, one full query token
    return 3 * ((layers - 1) * full * T + last) * B * L


def make_batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (B, L, T)).astype(np.int32)
    ids[..., 0], ids[..., 31], ids[..., -1] = 101, 102, 102
    types = np.zeros((B, L, T), np.int32)
    types[..., 32:] = 1
    return {"pair_ids": ids, "pair_mask": np.ones((B, L, T), np.int32), "pair_type_ids": types,
            "labels": rng.integers(0, 3, (B, L)).astype(np.float32), "mask": np.ones((B, L), bool)}


def jax_train(path, dtype, steps):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx
    from ranking_jax.models import cross_encoder
    model = cross_encoder(pretrained=path, dtype=dtype)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-5)
    opt = tx.init(params)

    def loss_fn(p, batch, key):
        s = nnx.merge(graphdef, p, rest)(batch, deterministic=False, rngs=nnx.Rngs(dropout=key))
        return -jnp.mean(jnp.sum(jax.nn.softmax(batch["labels"]) * jax.nn.log_softmax(s), -1))

    def step(p, o, batch, key):
        loss, g = jax.value_and_grad(loss_fn)(p, batch, key)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    batch = jax.device_put(make_batch())
    state = {"p": params, "o": opt, "i": 0}

    def run():
        state["p"], state["o"], loss = step(state["p"], state["o"], batch, jax.random.key(state["i"]))
        state["i"] += 1
        loss.block_until_ready()

    t = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t
    return timings(run, iters=steps)[0], compile_s


def torch_train(path, steps, threads):
    import torch
    from transformers import BertModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    bert = BertModel.from_pretrained(str(path), add_pooling_layer=False)
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    bert.train()
    opt = torch.optim.AdamW(list(bert.parameters()) + list(head.parameters()), lr=1e-5)
    b = make_batch()
    ids, mask, types = (torch.from_numpy(b[k].reshape(B * L, T)).long() for k in
                        ("pair_ids", "pair_mask", "pair_type_ids"))
    labels = torch.from_numpy(b["labels"])

    def run():
        opt.zero_grad(set_to_none=True)
        h = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        s = head(h[:, 0]).view(B, L)
        loss = -(torch.softmax(labels, -1) * torch.log_softmax(s, -1)).sum(-1).mean()
        loss.backward()
        opt.step()

    return timings(run, warmup=1, iters=steps)[0], bert.config._attn_implementation


ST_SCRIPT = """
import sys, numpy as np
from sentence_transformers import SentenceTransformer
import torch; torch.set_num_threads(int(sys.argv[4]))
texts = open(sys.argv[2], encoding="utf-8").read().split("\\n")[:-1]
m = SentenceTransformer(sys.argv[1], device="cpu"); m.max_seq_length = 256
np.save(sys.argv[3], m.encode(texts, batch_size=32, normalize_embeddings=True))
"""


def encode_texts(n, kind="abstracts"):
    rows = []
    with open(ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = d.get("title", "") if kind == "titles" else d.get("title", "") + " " + d.get("text", "")
            rows.append(text.replace("\n", " ").strip())
            if len(rows) == n:
                break
    return rows


def run_process(cmd, env):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--forward-only", action="store_true", help="only the f32 forward against the matmul rate")
    p.add_argument("--model", choices=("minilm", "mpnet"), default="minilm", help="the encoder for encoding")
    p.add_argument("--kind", choices=("abstracts", "titles"), default="abstracts")
    p.add_argument("--skip-bf16", action="store_true")
    args = p.parse_args()
    from ranking_jax import assets
    path = assets.minilm_path()
    if args.forward_only:
        return forward_report(path, args.texts)
    threads = os.cpu_count()
    print(f"machine: {cpu_description()}; load average {os.getloadavg()}; torch threads={threads}; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    peak = matmul_peak()
    print(f"jitted f32 2048^3 matmul peak: {peak:.0f} GFLOP/s")
    rows = []
    if not args.skip_train:
        flops = train_flops()
        res = {}
        # interleave frameworks so background load hits both alike
        runs = [("jax f32", lambda: jax_train(path, "float32", args.steps)),
                ("torch f32", lambda: torch_train(path, args.steps, threads)),
                ("jax bf16-matmul", lambda: jax_train(path, "bfloat16", args.steps))]
        for name, fn in runs[:2] if args.skip_bf16 else runs:
            ts, extra = fn()
            res[name] = statistics.median(ts)
            print(f"train {name}: steps {[round(t, 2) for t in ts]} median {res[name]:.2f}s "
                  f"({extra if isinstance(extra, str) else f'first call incl. compile {extra:.1f}s'})", flush=True)
        executed = train_flops(cls_only_last=True)
        for name, t in res.items():
            done = flops if name.startswith("torch") else executed
            rows.append((f"train step ({name})", f"{B * L / t:.2f} pairs/s", f"{res['torch f32'] / t:.2f}x",
                         f"{done / t / 1e9:.0f} GFLOP/s = {100 * done / t / 1e9 / peak:.0f}% of peak"))
    if not args.skip_encode:
        texts = encode_texts(args.texts, args.kind)
        path = assets.mpnet_path() if args.model == "mpnet" else path
        with tempfile.TemporaryDirectory() as tmp:
            inp = pathlib.Path(tmp) / "texts.txt"
            inp.write_text("\n".join(texts) + "\n", encoding="utf-8")
            env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="true")
            cmds = {"sentence-transformers": [sys.executable, "-c", ST_SCRIPT, str(path), str(inp),
                                              f"{tmp}/st.npy", str(threads)],
                    "ranking_jax f32": [sys.executable, "-m", "ranking_jax.encode", "--model", str(path), "--input",
                                        str(inp), "--output", f"{tmp}/jax.npy", "--normalize", "--max-length", "256"],
                    "ranking_jax bf16": [sys.executable, "-m", "ranking_jax.encode", "--model", str(path), "--input",
                                         str(inp), "--output", f"{tmp}/jaxbf16.npy", "--normalize", "--max-length",
                                         "256", "--dtype", "bfloat16"]}
            if args.skip_bf16:
                del cmds["ranking_jax bf16"]
            times = {k: [] for k in cmds}
            for _ in range(args.repeats):
                for k, c in cmds.items():
                    times[k].append(run_process(c, env))
            st = np.load(f"{tmp}/st.npy")
            for k, f in [("ranking_jax f32", "jax.npy"), ("ranking_jax bf16", "jaxbf16.npy")][:len(cmds) - 1]:
                print(f"encode {k}: max |jax - sentence-transformers| = {np.abs(np.load(f'{tmp}/{f}') - st).max():.2e}")
        med = {k: statistics.median(v[1:] if len(v) > 1 and k != "sentence-transformers" else v)
               for k, v in times.items()}
        for k, v in times.items():
            print(f"encode {k}: {[round(t, 1) for t in v]} s, median {med[k]:.1f}s", flush=True)
            rows.append((f"encode {len(texts)} {args.kind}, {args.model}, whole process ({k})",
                         f"{len(texts) / med[k]:.1f} texts/s",
                         f"{med['sentence-transformers'] / med[k]:.2f}x", ""))
    print("\n| benchmark | throughput | vs PyTorch | FLOP/s |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
