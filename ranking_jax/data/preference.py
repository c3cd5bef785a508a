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
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats

__all__ = ["Preference", "PreferenceConfig", "split_hh_dialogue"]

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
