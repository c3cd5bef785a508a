"""``preference``: pairwise preference data ``{prompt, chosen, rejected}`` as a tfds builder (array_record).

JSONL rows: ``{"prompt": str, "chosen": str, "rejected": str}`` with optional ``"chosen_score"``,
``"rejected_score"`` (floats; a file has them on every row or on none) and ``"tie"`` (bool, default
false: the two responses are judged equally good). Configs:
  ``jsonl``: ``{train,dev,test}.jsonl`` in manual_dir.
  ``hh_rlhf_helpful_base`` / ``hh_rlhf_harmless_base``: Anthropic HH-RLHF (Bai et al., 2022), whose rows
  are full dialogues ``{chosen, rejected}``; the prompt is the shared dialogue up to the last
  ``"\\n\\nAssistant:"`` and chosen/rejected are the final replies (rows whose two dialogues do not share
  that prompt are skipped and counted in ``info.metadata["skipped"]``).
Splits: one row per pair: ``prompt``, ``chosen``, ``rejected``, ``chosen_score``, ``rejected_score``
(NaN when the file has no scores; ``info.metadata["has_scores"][split]`` says which), ``tie``.
:func:`preference_pipeline` batches a split.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats
from ranking_jax.data.pipeline import Pipeline, build_pipeline, process_shard
from ranking_jax.data.tokenize import TextTokenizer

__all__ = ["Preference", "PreferenceConfig", "split_hh_dialogue", "preference_pipeline", "preference_pairs"]

_HH = "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/{}/{}.jsonl.gz"
ASSISTANT = "\n\nAssistant:"


@dataclasses.dataclass
class PreferenceConfig(tfds.core.BuilderConfig):
    urls: tuple[tuple[str, str], ...] = ()  # (split, url)
    dialogue: bool = False  # rows are HH-style {chosen, rejected} dialogues


def _hh(name: str, folder: str) -> PreferenceConfig:
    return PreferenceConfig(name=name, dialogue=True, urls=tuple((s, _HH.format(folder, s)) for s in ("train", "test")))


class Preference(tfds.core.GeneratorBasedBuilder):
    """Preference pairs: prompt, chosen, rejected, optional scores and tie flags."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [PreferenceConfig(name="jsonl", description="{train,dev,test}.jsonl in manual_dir"),
                       _hh("hh_rlhf_helpful_base", "helpful-base"), _hh("hh_rlhf_harmless_base", "harmless-base")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put train.jsonl / dev.jsonl / test.jsonl (optionally .gz) in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, disable_shuffling=True, metadata=tfds.core.MetadataDict(),
            features=tfds.features.FeaturesDict({
                "prompt": text, "chosen": text, "rejected": text,
                "chosen_score": tfds.features.Scalar(np.float32), "rejected_score": tfds.features.Scalar(np.float32),
                "tie": tfds.features.Scalar(np.bool_)}))

    def _split_generators(self, dl_manager):
        try:
            manual = pathlib.Path(dl_manager.manual_dir)
        except AssertionError:
            manual = None
        folders = [manual, manual / self.builder_config.name] if manual else []
        found = {s: [f / n for f in folders for n in (f"{s}.jsonl", f"{s}.jsonl.gz") if (f / n).exists()]
                 for s in ("train", "dev", "test")}
        paths = {split: hits[0] for split, hits in found.items() if hits}
        if not paths:
            if not self.builder_config.urls:
                raise FileNotFoundError(f"preference/{self.builder_config.name}: no train/dev/test.jsonl under the "
                                        f"manual directory {manual or '(none given)'}. "
                                        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
            downloaded = dl_manager.download_and_extract(dict(self.builder_config.urls))
            paths = {s: pathlib.Path(p) for s, p in downloaded.items()}
        self.info.metadata["skipped"], self.info.metadata["has_scores"] = {}, {}
        return {split: self._generate_examples(split=split, path=p) for split, p in paths.items()}

    def _generate_examples(self, *, split: str, path):
        dialogue = self.builder_config.dialogue
        skipped = formats.Skipped(str(path))
        has_scores, row = None, 0
        required = ("chosen", "rejected") if dialogue else ("prompt", "chosen", "rejected")
        for n, obj in formats.read_jsonl(path, required=required):
            if dialogue:
                parts = split_hh_dialogue(obj["chosen"], obj["rejected"])
                if parts is None:
                    skipped.add(f"chosen and rejected do not share the prompt up to the last {ASSISTANT!r}",
                                f"line {n}")
                    continue
                obj = dict(zip(("prompt", "chosen", "rejected"), parts))
            scored = "chosen_score" in obj or "rejected_score" in obj
            has_scores = scored if has_scores is None else has_scores
            if scored != has_scores or (scored and not ("chosen_score" in obj and "rejected_score" in obj)):
                raise formats.DataFormatError(path, n, "chosen_score and rejected_score on every row or on none "
                                              f"(earlier rows {'have' if has_scores else 'lack'} them)", str(obj))
            for key in required:
                if not isinstance(obj[key], str):
                    raise formats.DataFormatError(path, n, f"a string under {key!r}", repr(obj[key]))
            try:
                scores = [float(obj[k]) if scored else math.nan for k in ("chosen_score", "rejected_score")]
            except (TypeError, ValueError):
                raise formats.DataFormatError(path, n, "numeric chosen_score and rejected_score", str(obj)) from None
            if not isinstance(obj.get("tie", False), bool):
                raise formats.DataFormatError(path, n, "a boolean 'tie' flag", repr(obj["tie"]))
            yield row, {"prompt": obj["prompt"], "chosen": obj["chosen"], "rejected": obj["rejected"],
                        "chosen_score": scores[0], "rejected_score": scores[1], "tie": obj.get("tie", False)}
            row += 1
        self.info.metadata["skipped"][split] = skipped.report()
        self.info.metadata["has_scores"][split] = bool(has_scores)


def split_hh_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen reply, rejected reply) of two HH dialogues sharing all but the last reply, else None."""
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        return None
    prompt = chosen[:cut + len(ASSISTANT)]
    if not rejected.startswith(prompt):
        return None
    return prompt, chosen[len(prompt):], rejected[len(prompt):]


def preference_pipeline(source, *, batch_size: int, train: bool, seed: int = 0, num_epochs: int | None = None,
                        prompt_length: int = 64, response_length: int = 128,
                        tokenizer: TextTokenizer | None = None, pairs: bool = False, text: bool = True,
                        extra: Mapping[str, np.ndarray] | None = None,
                        shard: tuple[int, int] | None = None) -> Pipeline:
    """Batches of a ``preference`` split: prompt/chosen/rejected ``*_ids``/``*_mask`` ([CLS] text [SEP]),
    ``chosen_score``/``rejected_score`` (when the split has scores), ``tie`` [B], and as a list of two,
    ``labels`` [B, 2] = (1, 0) ((1, 1) for ties) with ``mask`` [B, 2] False on padding rows.

    ``pairs=True`` gives cross-encoder inputs instead of the token arrays (:func:`preference_pairs`);
    ``text=False`` gives no token arrays at all (a model that reads only ``extra`` fields).
    ``extra`` adds per-row float arrays ``{key: [N, ...]}`` (row ``i`` of the split) to the batches as
    ``key`` ``[B, ...]``, 0 on padding rows (e.g. precomputed reference-model scores).
    """
    tok = tokenizer or TextTokenizer()
    decode = lambda v: v.decode() if isinstance(v, bytes) else v
    rows = [{k: decode(v) for k, v in source[i].items()} for i in range(len(source))]
    scored = bool(rows) and not np.isnan(rows[0]["chosen_score"])
    local = batch_size // process_shard(shard)[1]
    extra = {k: np.asarray(v, np.float32) for k, v in (extra or {}).items()}
    for key, values in extra.items():
        if len(values) != len(rows) or any(key in row for row in rows[:1]):
            raise ValueError(f"preference_pipeline: extra[{key!r}] must be a new field with one entry per row of the "
                             f"split ({len(rows)} rows), got shape {values.shape}")
        for row, value in zip(rows, values):
            row[key] = value

    def stack(rs):
        real = [i for i, r in enumerate(rs) if "pad" not in r]
        out = {"tie": np.zeros(local, bool), "labels": np.zeros((local, 2), np.float32),
               "mask": np.zeros((local, 2), bool)}
        fields = (("prompt", prompt_length), ("chosen", response_length), ("rejected", response_length))
        for field, length in fields if text else ():
            enc = tok.encode([rs[i][field] for i in real], length=length)
            for name in ("ids", "mask"):
                out[f"{field}_{name}"] = np.zeros((local, length), np.int32)
                out[f"{field}_{name}"][real] = enc[name]
        if scored:
            for field in ("chosen_score", "rejected_score"):
                out[field] = np.zeros(local, np.float32)
                out[field][real] = [rs[i][field] for i in real]
        for key, values in extra.items():
            out[key] = np.zeros((local,) + values.shape[1:], np.float32)
            out[key][real] = [rs[i][key] for i in real]
        for i in real:
            out["tie"][i] = rs[i]["tie"]
            out["labels"][i] = (1.0, 1.0 if rs[i]["tie"] else 0.0)
            out["mask"][i] = True
        return preference_pairs(out) if pairs and text else out

    return build_pipeline(rows, batch_size=batch_size, train=train, seed=seed, num_epochs=num_epochs, shard=shard,
                  batch_fn=stack, options={"kind": "preference", "lengths": [prompt_length, response_length],
                                           "pairs": pairs, "text": text, "extra": sorted(extra)})


def preference_pairs(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cross-encoder inputs of a :func:`preference_pipeline` batch: the (chosen, rejected) list of two as
    ``pair_ids``/``pair_mask``/``pair_type_ids`` ``[B, 2, Tp + Tr - 1]`` = ``[CLS] prompt [SEP] response [SEP]``
    (type ids 1 on the response part; the response's own [CLS] is dropped; padding: id 0, mask 0). The
    ``prompt_*``, ``chosen_*`` and ``rejected_*`` token arrays are replaced; a cross-encoder then scores ``[B, 2]``
    against ``labels``/``mask``.
    """
    out = {k: v for k, v in batch.items() if not k.startswith(("prompt_", "chosen_ids", "chosen_mask",
                                                                 "rejected_ids", "rejected_mask"))}
    p_ids, p_len = batch["prompt_ids"], batch["prompt_mask"].sum(-1)[:, None]
    t = p_ids.shape[1] + batch["chosen_ids"].shape[1] - 1
    j = np.arange(t)[None, :]
    in_prompt = j < p_len
    prompt_part = np.take_along_axis(p_ids, np.minimum(j, p_ids.shape[1] - 1).repeat(len(p_ids), 0), axis=1)
    ids, mask, type_ids = [], [], []
    for side in ("chosen", "rejected"):
        r_ids, r_len = batch[f"{side}_ids"], batch[f"{side}_mask"].sum(-1)[:, None]
        in_response = ~in_prompt & (j - p_len + 1 < r_len) & (p_len > 0)
        response_part = np.take_along_axis(r_ids, np.clip(j - p_len + 1, 0, r_ids.shape[1] - 1), axis=1)
        ids.append(np.where(in_prompt, prompt_part, np.where(in_response, response_part, 0)))
        mask.append(in_prompt | in_response)
        type_ids.append(in_response)
    for name, parts in (("ids", ids), ("mask", mask), ("type_ids", type_ids)):
        out[f"pair_{name}"] = np.stack(parts, axis=1).astype(np.int32)
    return out
