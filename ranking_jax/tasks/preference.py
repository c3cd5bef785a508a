"""Pairwise preferences (``preference`` builder) scored by a cross-encoder as a list of two ``[CLS] prompt [SEP]
response [SEP]`` (or an MLP over frozen sentence features): a reward model (a ranking loss, Bradley-Terry) or a
policy (DPO family, MADPO, MaPO), whichever the objective's views read; preference accuracy, margin and loss on
the held-out split, and a softmax policy's reward over candidate responses when the data has them.
"""

from __future__ import annotations

import pathlib

import numpy as np

from ranking_jax import checkpoint, models, registry
from ranking_jax import data as data_lib
from ranking_jax.evaluators import PolicyEvaluator, PreferenceEvaluator
from ranking_jax.tasks import Context, Task
from ranking_jax.tasks.cache import cached, prepared
from ranking_jax.tasks.rewards import (response_scorer, scored_copy, sentence_features, similarity_reward,
                                       trained_reward)


def _reward(config, ctx: Context, pipeline):
    """``(reward_fn or None, cache key part)`` of ``config.data.reward_model``."""
    d = config.data
    if d.reward_model == "minilm":
        return similarity_reward(d.reward_model), "minilm"
    if not d.reward_model:
        return None, ""
    folder = pathlib.Path(d.reward_model)
    if not any((folder / f).exists() for f in ("model.safetensors", checkpoint.PARAMS_FILE)):
        raise FileNotFoundError(f"config.data.reward_model={d.reward_model!r}: neither 'minilm' nor the export_dir "
                                "of a run (model.safetensors or params.npz)")
    return trained_reward(d.reward_model, pipeline=pipeline, mesh=ctx.mesh, rules=ctx.rules), folder


def _source(config, reward, reward_key) -> pathlib.Path:
    """The JSONL folder: ``data.manual_dir`` (with reward scores added when a reward model is set) or the
    ChatterBot synthetic preference set."""
    d = config.data
    if d.manual_dir:
        source = pathlib.Path(d.manual_dir)
        if reward is None:
            return source
        return cached(config, "scored-preferences", key=(source, reward_key),
                      build=lambda out: scored_copy(source, reward, out))
    from ranking_jax.data import chatterbot
    return cached(config, "chatterbot-preferences", key=(chatterbot.english_dir(), reward_key),
                  build=lambda out: chatterbot.write_preferences(out, reward_fn=reward))


@registry.register("tasks.preference", resolves=("model.num_features",))
def preference(config, objective, ctx: Context) -> Task:
    """Data: ``data.manual_dir`` (``train.jsonl``/``test.jsonl``) or, when empty, ChatterBot preferences;
    ``data.reward_model`` adds reward-model scores (``"minilm"`` or an ``export_dir``). With ``data.features``
    the model is an MLP over frozen sentence features. A ``candidates_<eval split>.jsonl`` in ``manual_dir``
    (``{prompt, responses, rewards}`` lines) adds the ``policy`` evaluator. When the objective reads reference
    scores (DPO family), the initial model scores both splits once and the batches carry them."""
    d = config.data
    features = d.get("features", "")
    if config.model.name != ("mlp_ranker" if features else "cross_encoder"):
        raise ValueError(f"config.model.name={config.model.name!r}: the preference task scores "
                         "[CLS] prompt [SEP] response [SEP] pairs with 'cross_encoder', or frozen sentence features "
                         "(config.data.features) with 'mlp_ranker'")
    tokenizer = data_lib.TextTokenizer()
    split_features: dict[str, np.ndarray] = {}
    src = {}

    def rows_of(split_or_rows):
        return src[split_or_rows] if isinstance(split_or_rows, str) else split_or_rows

    def features_of(split_or_rows) -> np.ndarray:
        key = split_or_rows if isinstance(split_or_rows, str) else None
        if key not in split_features:
            rows = rows_of(split_or_rows)
            decoded = [{k: v.decode() if isinstance(v, bytes) else v for k, v in rows[i].items()}
                       for i in range(len(rows))]
            out = sentence_features(config, decoded)
            if key is None:
                return out
            split_features[key] = out
        return split_features[key]

    def pipeline(split_or_rows, *, train: bool = False, extra=None):
        if features:  # the MLP reads only the features: no token arrays
            extra = dict(extra or {}, features=features_of(split_or_rows))
        return data_lib.preference_pipeline(
            rows_of(split_or_rows), batch_size=d.batch_size if train else d.eval_batch_size, train=train,
            seed=config.seed, prompt_length=d.prompt_length, response_length=d.response_length, tokenizer=tokenizer,
            pairs=True, text=not features, extra=extra)

    reward, reward_key = _reward(config, ctx, pipeline)
    source = _source(config, reward, reward_key)
    src.update(prepared(config, data_lib.Preference, name="preference", builder_config="jsonl", source=source,
                        manual_dir=source).as_data_source())
    for split in (d.train_split, d.eval_split):
        if split not in src:
            raise ValueError(f"config.data: split {split!r} is not in {source} (has {sorted(src)})")
    updates = {"num_features": int(features_of(d.train_split).shape[-1])} if features else {}
    extra = {d.train_split: None, d.eval_split: None}
    if objective.needs_reference:  # the initial model: same pretrained weights and seed as the policy's
        reference = models.from_config(dict(config.model.to_dict(), **updates), seed=config.seed)
        for split in extra:
            scorer = PreferenceEvaluator(pipeline(split), mesh=ctx.mesh, rules=ctx.rules)
            extra[split] = {"reference_scores": scorer.scores(reference)[0]}
        del reference
    train_pipeline = pipeline(d.train_split, train=True, extra=extra[d.train_split])
    objective.check_batch(train_pipeline[0], "the preference task")
    evaluators = {"preference": PreferenceEvaluator(pipeline(d.eval_split, extra=extra[d.eval_split]),
                                                    mesh=ctx.mesh, rules=ctx.rules, objective=objective)}
    candidates = pathlib.Path(d.manual_dir) / f"candidates_{d.eval_split}.jsonl" if d.manual_dir else None
    if candidates is not None and candidates.exists():
        sets = [obj for _, obj in data_lib.read_jsonl(candidates, required=("prompt", "responses", "rewards"))]
        for n, obj in enumerate(sets, 1):
            if len(obj["responses"]) != len(obj["rewards"]) or not obj["responses"]:
                raise data_lib.DataFormatError(candidates, n, "as many rewards as (at least one) responses", str(obj))
        prompts = [obj["prompt"] for obj in sets for _ in obj["responses"]]
        responses = [y for obj in sets for y in obj["responses"]]
        evaluators["policy"] = PolicyEvaluator(
            response_scorer(prompts, responses, pipeline=pipeline, mesh=ctx.mesh, rules=ctx.rules),
            run_path=ctx.workdir / "policy.run",
            prompt_index=[i for i, obj in enumerate(sets) for _ in obj["responses"]],
            rewards=[float(r) for obj in sets for r in obj["rewards"]])
    return Task(train_pipeline.iterator(), evaluators, model_updates=updates)
