"""Frozen scorers the preference task builds on: sentence features, reward models (a zero-shot similarity or a
model another run exported) and a policy's scores of candidate responses."""

from __future__ import annotations

import json
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np
from flax import nnx

from ranking_jax import data as data_lib
from ranking_jax.evaluators import PreferenceEvaluator
from ranking_jax.tasks.cache import cached
from ranking_jax.tasks.distillation import load_exported


def sentence_encoder(pretrained: str):
    """The frozen mean-pooled, L2-normalized sentence encoder ``pretrained`` (``"minilm"`` or a directory)."""
    from ranking_jax.encode import TextEncoder
    from ranking_jax.models._common import resolve_pretrained
    return TextEncoder(resolve_pretrained(pretrained), pooling="mean", normalize=True, max_length=128)


def similarity_reward(pretrained: str, *, scale: float = 20.0) -> Callable[[list, list], np.ndarray]:
    """``(prompts, responses) -> scale * cos(e(prompt), e(response))`` with the zero-shot sentence encoder
    ``pretrained`` (``"minilm"``: all-MiniLM-L6-v2, trained with a contrastive loss at scale 20, so reward
    differences are that loss's logits)."""
    encoder = sentence_encoder(pretrained)

    def reward(prompts, responses):
        texts = sorted(set(prompts) | set(responses))
        row = {t: i for i, t in enumerate(texts)}
        v = encoder.encode(texts)
        return scale * np.sum(v[[row[t] for t in prompts]] * v[[row[t] for t in responses]], axis=-1)

    return reward


def response_scorer(prompts: Sequence[str], responses: Sequence[str], *, pipeline: Callable, mesh, rules
                    ) -> Callable[[nnx.Module], np.ndarray]:
    """``model -> [N]`` preference-model scores of (prompt_i, response_i); consecutive responses to one prompt
    share a row of the pair batches (``pipeline(rows)``), so each is scored once."""
    nan = float("nan")
    rows, slots, i = [], [], 0
    while i < len(responses):
        j = i + 1 if i + 1 < len(responses) and prompts[i + 1] == prompts[i] else i
        rows.append({"prompt": prompts[i], "chosen": responses[i], "rejected": responses[j], "chosen_score": nan,
                     "rejected_score": nan, "tie": False})
        slots += [(len(rows) - 1, 0)] + ([(len(rows) - 1, 1)] if j != i else [])
        i = j + 1
    scorer = PreferenceEvaluator(pipeline(rows), mesh=mesh, rules=rules)
    row, column = np.asarray(slots).T
    return lambda model: scorer.scores(model)[0][row, column]


def trained_reward(model_dir: str, *, pipeline: Callable, mesh, rules) -> Callable[[list, list], np.ndarray]:
    """A frozen reward model ``(prompts, responses) -> scores`` another run trained and exported (e.g. a
    Bradley-Terry run's ``export_dir``); ``pipeline(rows)`` batches its inputs as the policy's are."""
    model, _ = load_exported(model_dir)
    return lambda prompts, responses: response_scorer(prompts, responses, pipeline=pipeline, mesh=mesh,
                                                      rules=rules)(model)


def sentence_features(config, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
    """``[N, 2, 3D]`` features ``[e(x), e(y), e(x) * e(y)]`` of (prompt, chosen) and (prompt, rejected), ``e`` the
    frozen sentence encoder ``config.data.features``; the embeddings are cached per set of texts."""
    texts = sorted({r[k] for r in rows for k in ("prompt", "chosen", "rejected")})

    def embed(out):
        np.save(out / "embeddings.npy", sentence_encoder(config.data.features).encode(texts))

    emb = np.load(cached(config, "sentence-features", key=(config.data.features, texts), build=embed)
                  / "embeddings.npy")
    row = {t: i for i, t in enumerate(texts)}
    prompt = emb[[row[r["prompt"]] for r in rows]]
    sides = [emb[[row[r[side]] for r in rows]] for side in ("chosen", "rejected")]
    return np.stack([np.concatenate([prompt, y, prompt * y], -1) for y in sides], 1).astype(np.float32)


def scored_copy(source: pathlib.Path, reward: Callable, out: pathlib.Path) -> None:
    """``source``'s ``{train,dev,test}.jsonl`` written to ``out`` with ``chosen_score``/``rejected_score`` from
    ``reward``."""
    for path in sorted(source.glob("*.jsonl")):
        if path.stem not in ("train", "dev", "test"):
            continue
        rows = [obj for _, obj in data_lib.read_jsonl(path, required=("prompt", "chosen", "rejected"))]
        scores = np.asarray(reward([r["prompt"] for r in rows for _ in "cr"],
                                   [r[side] for r in rows for side in ("chosen", "rejected")])).reshape(-1, 2)
        with open(out / path.name, "w", encoding="utf-8") as f:
            for r, (c, n) in zip(rows, scores):
                f.write(json.dumps(dict(r, chosen_score=float(c), rejected_score=float(n)), ensure_ascii=False) + "\n")
