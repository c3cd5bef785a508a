"""Every config field with its default; ``configs/*.py`` start from :func:`base` and override.

    seed, name, task                     what runs (registry "tasks.<task>": text_ranking | letor | metric_learning
                                         | preference)
    mesh, sharding_rules                 e.g. [("data", -1), ("model", 1)], "default" | "fsdp" | [(logical, axis)]
    model.name + builder keywords        registry "models.<name>"
    loss                                 "losses.a + 0.1 * losses.b(k=v)": a weighted sum of registered losses, each
                                         read through the view it declares (ranking_jax.objectives)
    optimizer                            ranking_jax.optim.default_config()
    data                                 task-specific
    train                                num_steps, accum_steps | grad_cache_chunk, log/eval/checkpoint intervals,
                                         eval_before
    evals, early_stopping                measures (text: retrieval, zero_shot collections); metric/patience/mode
    resume, export_dir                   resume order: workdir > resume (another run's checkpoints) > pretrained
                                         weights (model.pretrained) > scratch; where to export the trained model

``get_config(PATH)`` loads a ``config.json`` a run wrote: ``python -m ranking_jax.main --config WORKDIR/config.json``
replays that run.
"""

from __future__ import annotations

import json
import pathlib

from ml_collections import ConfigDict

from ranking_jax import optim


def config_json(config: ConfigDict) -> str:
    """The resolved config as JSON (FieldReferences evaluated, keys sorted): what ``config.json`` holds."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=repr) + "\n"


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def get_config(path: str) -> ConfigDict:
    """The config a run saved to ``path`` (its ``config.json``), lists read back as tuples as configs write them."""
    try:
        return ConfigDict(_tuples(json.loads(pathlib.Path(path).read_text())))
    except (OSError, ValueError) as e:
        raise ValueError(f"--config {path}: not a config.json a run wrote ({e})") from None


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a.b": value}`` of a nested dict."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old_json: str, new_json: str, *, ignore=()) -> list[str]:
    """``"key: old -> new"`` for every flattened field where two ``config.json`` texts differ, except ``ignore``."""
    old, new = flatten(json.loads(old_json)), flatten(json.loads(new_json))
    return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k) and k not in ignore]


# Fields that train wrongly (or fail deep inside a library) outside their range: (lowest allowed, why).
_RANGES = {"data.batch_size": (1, "rows per step"), "data.eval_batch_size": (1, "rows per evaluation batch"),
           "data.list_size": (1, "documents per training list"), "data.eval_list_size": (1, "documents per list"),
           "data.query_length": (4, "tokens with the special ones"), "data.doc_length": (4, "tokens"),
           "train.num_steps": (0, "steps"), "train.accum_steps": (1, "micro-batches per step"),
           "train.grad_cache_chunk": (0, "rows per chunk (0 = off)"), "train.log_every": (1, "steps"),
           "train.eval_every": (0, "steps (0 = at the end)"), "train.checkpoint_every": (0, "steps (0 = off)"),
           "train.keep_checkpoints": (1, "checkpoints"), "optimizer.learning_rate": (0, "a negative one ascends"),
           "optimizer.weight_decay": (0, "a negative one grows the weights"),
           "optimizer.grad_clip_norm": (0, "0 = off; a negative one flips the gradient")}


def validate(config: ConfigDict) -> None:
    """Refuses, naming the field, a config value outside its range (:data:`_RANGES`) before anything runs."""
    flat = flatten(config.to_dict())
    for key, (low, what) in _RANGES.items():
        value = flat.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value < low:
            raise ValueError(f"config.{key} must be >= {low} ({what}), got {value}")


def parse_arg(arg: str | None, **defaults):
    """``"runlocal,steps=10"`` -> ConfigDict(runlocal=True, steps=10) over ``defaults`` (big_vision style)."""
    out = ConfigDict(defaults)
    for token in filter(None, (arg or "").split(",")):
        key, _, value = token.partition("=")
        if key not in out:
            raise ValueError(f"config arg {key!r} is unknown; valid: {sorted(out.keys())}")
        if not _:
            out[key] = True
        else:
            out[key] = type(out[key])(value) if not isinstance(out[key], bool) else value.lower() in ("1", "true")
    return out


def base(task: str) -> ConfigDict:
    c = ConfigDict()
    c.seed = 0
    c.name = task
    c.task = task
    c.mesh = [("data", -1), ("model", 1)]
    c.sharding_rules = "default"
    c.model = ConfigDict({"name": ""})
    c.loss = "losses.softmax_loss"
    c.optimizer = optim.default_config()
    c.data = ConfigDict({"batch_size": 8, "list_size": 8, "eval_batch_size": 8, "eval_list_size": 32,
                         "cache_dir": ""})
    c.train = ConfigDict({"num_steps": 100, "accum_steps": 1, "grad_cache_chunk": 0, "log_every": 10,
                          "eval_every": 0, "checkpoint_every": 50, "keep_checkpoints": 2, "eval_before": True})
    c.evals = ConfigDict({"measures": "nDCG@10 RR@10", "retrieval": True, "retrieval_depth": 100})
    c.early_stopping = ConfigDict({"metric": "", "patience": 0, "mode": "max"})
    c.resume = ""
    c.export_dir = ""
    return c


def text_ranking(family: str, *, collection: str = "chatterbot") -> ConfigDict:
    """A MiniLM-initialized text ranker on a BEIR-format collection, BM25 candidates."""
    c = base("text_ranking")
    c.name = family
    c.model = ConfigDict({"name": family, "pretrained": "minilm"})
    c.data.update({"collection": collection, "candidates": "bm25", "train_split": "train", "eval_split": "test",
                   "max_eval_queries": 0, "train_depth": 100, "eval_depth": 50, "query_length": 32, "doc_length": 128,
                   "max_positives": 1, "list_size": 8, "eval_list_size": 50, "batch_size": 8, "eval_batch_size": 8})
    c.evals.zero_shot = ""  # comma-separated BEIR folders evaluated zero-shot (out of domain)
    # distillation: comma-separated teachers, exported models' dirs or pretrained bi-encoders ("minilm", "mpnet"),
    # their scores averaged (the paper's T2 ensemble); training then uses teacher_per_query scored (positive, hard
    # negative) triples per query; the ensemble's re-ranking is the "teacher" baseline
    c.data.teacher = ""
    c.data.teacher_per_query = 2
    c.data.teacher_norm = "none"  # or "zscore": each teacher standardized by its training scores before the mean
    c.data.teacher_length = 256  # document tokens of pretrained bi-encoder teachers ("minilm", "mpnet")
    c.data.first_stage_weight = 0.0  # scores = model + this * first stage (score interpolation), trained and evaluated
    c.data.propensities = ""  # "popularity": Rel-MF exposure propensities for losses that read them
    c.data.pseudo_docs = 3  # E2Rank pseudo-queries: the query and its first stage's top documents ...
    c.data.pseudo_length = 128  # ... cut to this many tokens
    finetune_optimizer(c, 3e-5)
    return c


def finetune_optimizer(c: ConfigDict, learning_rate: float) -> None:
    """Fine-tuning a pretrained encoder: AdamW, 10 warm-up steps, linear decay to 0 at ``train.num_steps``,
    gradient clipping at 1, weight decay 0.01 (not on biases and LayerNorm)."""
    c.optimizer.update({"name": "adamw", "learning_rate": learning_rate, "schedule": "linear", "warmup_steps": 10,
                        "grad_clip_norm": 1.0, "weight_decay": 0.01})
    c.optimizer.total_steps = c.train.get_ref("num_steps")


def smoke(c: ConfigDict) -> None:
    """The ``runlocal`` training schedule: 2 steps, each logged, evaluated and checkpointed at the end, no warm-up."""
    c.train.update({"num_steps": 2, "log_every": 1, "eval_every": 2, "checkpoint_every": 2})
    c.optimizer.warmup_steps = 0


TEXT_ARGS = {"runlocal": False, "scifact": False, "steps": 300}


def text_variant(c: ConfigDict, a: ConfigDict, *, evaluations: int = 3) -> ConfigDict:
    """Applies the text configs' shared args: ``steps`` (evaluated and checkpointed ``evaluations`` times),
    ``scifact`` (../shared/data/scifact, 100 held-out queries) and ``runlocal`` (a 2-step smoke run on tiny
    lists and lengths; each config also shrinks its model)."""
    c.train.num_steps = a.steps
    c.train.eval_every = c.train.checkpoint_every = max(a.steps // evaluations, 1)
    if a.scifact:
        c.data.collection = "../shared/data/scifact"
        c.data.max_eval_queries = 100
    if a.runlocal:
        smoke(c)
        c.data.update({"list_size": 4, "batch_size": 8, "max_eval_queries": 8, "eval_depth": 8, "eval_list_size": 8,
                       "eval_batch_size": 8, "doc_length": 48, "query_length": 16})
    return c


def metric_learning(dataset: str = "digits") -> ConfigDict:
    """An MLP embedder on an ``image_classes`` open-world split: m-per-class batches, base loss (+ TCM)."""
    c = base("metric_learning")
    c.model = ConfigDict({"name": "mlp_embedder", "hidden": (256,), "dim": 64, "normalize": True})
    c.loss = "losses.multi_similarity_loss"  # + losses.tcm_regularizer: TCM (Zhang et al. 2024)
    c.data.update({"dataset": dataset, "manual_dir": "", "train_split": "train", "eval_split": "test",
                   "batch_size": 64, "classes_per_batch": 4, "eval_batch_size": 256, "max_eval_images": 0})
    c.evals = ConfigDict({"recall_at": (1, 2, 4, 8)})
    c.optimizer.learning_rate = 1e-3
    return c


def preference() -> ConfigDict:
    """A MiniLM cross-encoder scoring (prompt, chosen) and (prompt, rejected) as a list of two; the loss decides
    whether it is a reward model (a ranking loss) or a policy (the DPO family's views)."""
    c = base("preference")
    c.model = ConfigDict({"name": "cross_encoder", "pretrained": "minilm"})
    c.loss = "losses.pairwise_logistic_loss"
    c.data.update({"manual_dir": "", "reward_model": "", "features": "", "train_split": "train", "eval_split": "test",
                   "prompt_length": 32, "response_length": 64, "batch_size": 16, "eval_batch_size": 64})
    c.evals = ConfigDict()
    finetune_optimizer(c, 3e-5)
    return c
