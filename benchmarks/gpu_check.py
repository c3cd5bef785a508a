"""Accelerator check: the sharded cross-encoder train step (f32 and bf16 compute), SAM's overhead and
bi-encoder encoding throughput, for MiniLM-L6 (BERT) and MPNet-base, each beside PyTorch (transformers' BertModel /
MPNetModel) on the same GPU, shapes and architecture, in one run.

    python benchmarks/gpu_check.py --out results.json [--arch minilm,mpnet] [--config path/to/minilm/config.json]

Weights are random with MiniLM-L6's / all-mpnet-base-v2's architecture (values do not change the speed); the
train step is ``ranking_jax.train.make_train_step`` over a ``(data=N, model=1)`` mesh: the path a TPU/GPU run
takes.
Prints medians of timed steps after warm-up and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_time

MINILM = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
          "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2}
MPNET = {"model_type": "mpnet", "vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12,
         "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 0,
         "relative_attention_num_buckets": 32, "pad_token_id": 1, "layer_norm_eps": 1e-5}
ARCHS = {"minilm": MINILM, "mpnet": MPNET}


def torch_encoder(cfg: dict, **overrides):
    """transformers' BertModel or MPNetModel of ``cfg``, without a pooler."""
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel
    if cfg.get("model_type") == "mpnet":
        return MPNetModel(MPNetConfig(**{**cfg, **overrides}), add_pooling_layer=False)
    return BertModel(BertConfig(**{**cfg, **overrides}), add_pooling_layer=False)


def flops_per_pair(cfg: dict, t: int) -> float:
    """Forward matmul FLOPs of one sequence: dense layers 2·P·T plus attention 4·T²·D per layer."""
    d, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    dense = n * (4 * d * d + 2 * d * f)
    return 2 * dense * t + n * 4 * t * t * d


def batch(b: int, l: int, t: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, (b, l, t)).astype(np.int32)
    ids[..., 0] = 101
    lengths = rng.integers(t // 2, t + 1, (b, l))
    mask = (np.arange(t) < lengths[..., None]).astype(np.int32)
    labels = np.zeros((b, l), np.float32)
    labels[:, 0] = 1.0
    return {"pair_ids": ids * mask, "pair_mask": mask, "pair_type_ids": np.zeros_like(ids),
            "labels": labels, "mask": np.ones((b, l), bool)}


def jax_train(cfg, *, b, l, t, dtype, optimizer):
    from ranking_jax import objectives, optim, sharding, train
    from ranking_jax.models import cross_encoder
    model = cross_encoder(config=dict(cfg), dtype=dtype, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    split, params = train.split_model(model)
    mesh = sharding.make_mesh([("data", -1), ("model", 1)])
    oc = optim.default_config()
    oc.name, oc.learning_rate = optimizer, 2e-5
    tx = optim.make(oc)
    state = train.init_state(params, tx, 0, mesh, sharding.DEFAULT_RULES)
    step = train.make_train_step(split, objectives.parse("losses.softmax_loss"), tx,
                                 shardings=train.state_shardings(state))
    data = sharding.shard_batch(batch(b, l, t), mesh)
    holder = {"state": state}

    def run():
        holder["state"], m = step(holder["state"], data, None)
        jax.block_until_ready(m["loss"])
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.DEFAULT_RULES):
        sec = median_time(run, warmup=3, iters=20)
        recompiles = step._cache_size()
    return sec, recompiles


def torch_train(cfg, *, b, l, t, bf16):
    import torch
    dev = "cuda"
    enc = torch_encoder(cfg, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1).to(dev)
    head = torch.nn.Linear(cfg["hidden_size"], 1).to(dev)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-5, fused=True)
    bt = batch(b, l, t)
    ids = torch.tensor(bt["pair_ids"].reshape(b * l, t), device=dev)
    mask = torch.tensor(bt["pair_mask"].reshape(b * l, t), device=dev)
    target = torch.zeros(b, dtype=torch.long, device=dev)

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            h = enc(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
            s = head(h).float().view(b, l)
            loss = torch.nn.functional.cross_entropy(s, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    return median_time(run, warmup=3, iters=20)


def jax_encode(cfg, *, n, t, dtype):
    from flax import nnx
    from ranking_jax.models import bi_encoder
    model = bi_encoder(config=dict(cfg), dtype=dtype, pooling="mean")
    graphdef, state = nnx.split(model)
    enc = jax.jit(lambda s, ids, m: nnx.merge(graphdef, s).encode_docs(ids, m))
    bt = batch(n, 1, t)
    ids, mask = jnp.asarray(bt["pair_ids"][:, 0]), jnp.asarray(bt["pair_mask"][:, 0])
    return median_time(lambda: jax.block_until_ready(enc(state, ids, mask)), warmup=3, iters=20)


def torch_encode(cfg, *, n, t, half):
    import torch
    enc = torch_encoder(cfg).cuda().eval()
    if half:
        enc = enc.half()
    bt = batch(n, 1, t)
    ids = torch.tensor(bt["pair_ids"][:, 0], device="cuda")
    mask = torch.tensor(bt["pair_mask"][:, 0], device="cuda")

    @torch.inference_mode()
    def run():
        h = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        torch.cuda.synchronize()
    return median_time(run, warmup=3, iters=20)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--config", default="")
    p.add_argument("--arch", default="minilm,mpnet", help="comma-separated: minilm, mpnet")
    p.add_argument("--smoke", action="store_true", help="tiny shapes and 2 layers: checks the script on a CPU")
    args = p.parse_args()
    results = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "rows": []}
    print(results, flush=True)
    for arch in args.arch.split(","):
        cfg = dict(ARCHS[arch], num_hidden_layers=2) if args.smoke else dict(ARCHS[arch])
        if args.config and arch == "minilm":
            cfg.update({k: v for k, v in json.load(open(args.config)).items() if k in MINILM})
        measure(arch, cfg, args, results)


def measure(arch: str, cfg: dict, args, results: dict) -> None:
    """Every row of one architecture (MPNet: the small train shape only)."""
    shapes, enc_shape = ([(2, 2, 32)], (16, 32)) if args.smoke else ([(4, 8, 256), (32, 8, 256)], (1024, 128))
    if arch == "mpnet":
        shapes = shapes[:1]

    def record(name, fn, **info):
        try:
            out = fn()
            sec, extra = (out if isinstance(out, tuple) else (out, None))
            row = {"name": name, "median_s": sec, **info}
            if extra is not None:
                row["cache_size"] = extra
            if "pairs" in info:
                row["pairs_per_s"] = info["pairs"] / sec
                row["tflops"] = info.get("flop", 0) / sec / 1e12
        except Exception as e:  # keep measuring the others
            row = {"name": name, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        json.dump(results, open(args.out, "w"), indent=1)

    for (b, l, t) in shapes:
        pairs = b * l
        flop = 3 * flops_per_pair(cfg, t) * pairs
        for dtype in ("float32", "bfloat16"):
            record(f"{arch} jax train {b}x{l}x{t} {dtype} adamw",
                   lambda: jax_train(cfg, b=b, l=l, t=t, dtype=dtype, optimizer="adamw"), pairs=pairs, flop=flop)
        for bf16 in (False, True):
            record(f"{arch} torch train {b}x{l}x{t} {'bf16 autocast' if bf16 else 'float32'}",
                   lambda: torch_train(cfg, b=b, l=l, t=t, bf16=bf16), pairs=pairs, flop=flop)
    for name in ("sam", "asam"):
        b, l, t = shapes[-1]
        record(f"{arch} jax train {b}x{l}x{t} bfloat16 {name}",
               lambda: jax_train(cfg, b=b, l=l, t=t, dtype="bfloat16", optimizer=name),
               pairs=b * l, flop=2 * 3 * flops_per_pair(cfg, t) * b * l)
    n, t = enc_shape
    for dtype in ("float32", "bfloat16"):
        record(f"{arch} jax encode {n}x{t} {dtype}", lambda: jax_encode(cfg, n=n, t=t, dtype=dtype), pairs=n,
               flop=flops_per_pair(cfg, t) * n)
    record(f"{arch} torch encode {n}x{t} float32", lambda: torch_encode(cfg, n=n, t=t, half=False), pairs=n,
           flop=flops_per_pair(cfg, t) * n)
    record(f"{arch} torch encode {n}x{t} float16", lambda: torch_encode(cfg, n=n, t=t, half=True), pairs=n,
           flop=flops_per_pair(cfg, t) * n)


if __name__ == "__main__":
    main()
