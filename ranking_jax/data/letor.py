"""``letor``: learning-to-rank feature files (SVMlight/LETOR format) as a tfds builder (array_record).

Line format ``label qid:Q 1:v 2:v ... [# comment]``. Configs: MSLR-WEB10K/30K folds 1-5 (Qin & Liu,
2013; 136 features), MQ2007/MQ2008 folds 1-5 (LETOR 4.0; 46 features; the official archives are .rar,
so manual_dir only: unrar them first), Istella-S (220 features), ``mslr_sample`` (the MSLR-WEB10K Fold1
samples shipped in the rankeval 0.8.2 sdist; ``scripts/prepare_mslr_sample.py`` writes them) and
``custom`` (``{train,vali,test}.txt`` in manual_dir; feature count found by a first pass).

Splits ``train`` / ``dev`` (the ``vali`` file) / ``test``: one row per query (a contiguous run of lines
with the same qid, in file order): ``qid``, ``features`` float32 [n, F] (raw, unnormalized),
``labels`` float32 [n] (graded relevance). A qid that reappears after other qids becomes a second list;
such repeats are counted in ``info.metadata["repeated_qids"]`` and logged.
``info.metadata["feature_stats"]`` holds the per-feature mean/std/min/max over all train documents,
used by :func:`normalize` for global normalization.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds

from ranking_jax.data import formats
from ranking_jax.data._tfds import find_source

__all__ = ["Letor", "LetorConfig", "normalize", "NORMALIZATIONS"]

log = logging.getLogger(__name__)
_MSLR_URLS = {"10k": "https://api.onedrive.com/v1.0/shares/s!AtsMfWUz5l8nbOIoJ6Ks0bEMp78/root/content",
              "30k": "https://api.onedrive.com/v1.0/shares/s!AtsMfWUz5l8nbXGPBlwD1rnFdBY/root/content"}
_FILES = {"train": "train.txt", "dev": "vali.txt", "test": "test.txt"}
NORMALIZATIONS = ("none", "query_minmax", "query_zscore", "global_zscore")


@dataclasses.dataclass
class LetorConfig(tfds.core.BuilderConfig):
    url: str | None = None
    num_features: int | None = None
    files: tuple[tuple[str, str], ...] = tuple(_FILES.items())  # (split, path relative to the source dir)


def _configs() -> list[LetorConfig]:
    configs = []
    for size, url in _MSLR_URLS.items():
        for fold in range(1, 6):
            configs.append(LetorConfig(name=f"mslr_web{size}_fold{fold}", url=url, num_features=136,
                                       files=tuple((s, f"Fold{fold}/{f}") for s, f in _FILES.items())))
    for name in ("mq2007", "mq2008"):
        for fold in range(1, 6):
            configs.append(LetorConfig(name=f"{name}_fold{fold}", num_features=46, description="manual_dir only",
                                       files=tuple((s, f"Fold{fold}/{f}") for s, f in _FILES.items())))
    configs.append(LetorConfig(name="istella_s", url="http://library.istella.it/dataset/istella-s-letor.tar.gz",
                               num_features=220, files=tuple((s, f"sample/{f}") for s, f in _FILES.items())))
    configs.append(LetorConfig(name="mslr_sample", num_features=136, description=(
        "MSLR-WEB10K Fold1 5k-line samples from the rankeval 0.8.2 sdist (scripts/prepare_mslr_sample.py)."),
        files=(("train", "msn1.fold1.train.5k.txt"), ("test", "msn1.fold1.test.5k.txt"))))
    configs.append(LetorConfig(name="custom", description="{train,vali,test}.txt in manual_dir."))
    return configs


class Letor(tfds.core.GeneratorBasedBuilder):
    """LETOR/SVMlight ranking features, one example per query."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the extracted dataset folder (e.g. Fold1/train.txt, vali.txt, test.txt) in manual_dir; for the "
        "rankeval MSLR sample run scripts/prepare_mslr_sample.py --out DIR.")

    def _info(self) -> tfds.core.DatasetInfo:
        f = self.builder_config.num_features
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, disable_shuffling=True, metadata=tfds.core.MetadataDict(),
            homepage="https://www.microsoft.com/en-us/research/project/mslr/",
            features=tfds.features.FeaturesDict({
                "qid": tfds.features.Text(),
                "features": tfds.features.Tensor(shape=(None, f), dtype=np.float32,
                                                 encoding=tfds.features.Encoding.ZLIB),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.float32)}))

    def _split_generators(self, dl_manager):
        config = self.builder_config
        files = dict(config.files)
        root = find_source(dl_manager, name=config.name, url=config.url, marker=files["train"],
                           instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        paths = {split: root / rel for split, rel in files.items() if (root / rel).exists()}
        num_features = config.num_features or max(_max_index(p) for p in paths.values())
        self.info.metadata["repeated_qids"] = {}
        self.info.metadata["num_features"] = num_features
        return {split: self._generate_examples(split=split, path=p, num_features=num_features)
                for split, p in paths.items()}

    def _generate_examples(self, *, split: str, path, num_features: int):
        stats = _Stats(num_features) if split == "train" else None
        seen: set[str] = set()
        repeated = formats.Skipped(f"{path} (kept as separate lists)")
        row = 0
        for qid, x, y, first_line in _query_runs(path, num_features):
            if qid in seen:
                repeated.add("qid reappears after other qids", f"line {first_line}: qid {qid}")
            seen.add(qid)
            if stats is not None:
                stats.add(x)
            yield row, {"qid": qid, "features": x, "labels": y}
            row += 1
        self.info.metadata["repeated_qids"][split] = repeated.report()
        if stats is not None:
            self.info.metadata["feature_stats"] = stats.result()


def _query_runs(path, num_features):
    qid, xs, ys, first = None, [], [], 0
    for n, label, q, x in formats.read_svmlight(path, num_features=num_features):
        if q != qid and xs:
            yield qid, np.stack(xs), np.array(ys, np.float32), first
            xs, ys = [], []
        if not xs:
            qid, first = q, n
        xs.append(x)
        ys.append(label)
    if xs:
        yield qid, np.stack(xs), np.array(ys, np.float32), first


def _max_index(path) -> int:
    largest = 0
    with formats.open_text(path, encoding="latin-1") as f:
        for line in f:
            for token in line.split("#", 1)[0].split()[2:]:
                largest = max(largest, int(token.split(":", 1)[0]))
    return largest


class _Stats:
    """Per-feature mean / std / min / max over documents, accumulated in float64."""

    def __init__(self, f: int):
        self.n, self.s, self.ss = 0, np.zeros(f), np.zeros(f)
        self.lo, self.hi = np.full(f, np.inf), np.full(f, -np.inf)

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.n += len(x)
        self.s += x.sum(0)
        self.ss += (x * x).sum(0)
        self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))

    def result(self) -> dict[str, list[float]]:
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.ss / self.n - mean * mean, 0.0))
        return {"mean": mean.tolist(), "std": std.tolist(), "min": self.lo.tolist(), "max": self.hi.tolist()}


def normalize(features: np.ndarray, *, mode: str, stats: dict | None = None) -> np.ndarray:
    """Normalizes the features [n, F] of one query's full list.

    ``query_minmax``: (x - min_q) / (max_q - min_q) per feature over the query's documents (LETOR 4.0's
    QueryLevelNorm); ``query_zscore``: (x - mean_q) / std_q; ``global_zscore``: (x - mean) / std with the
    train-split statistics ``stats`` (``info.metadata["feature_stats"]``). A constant feature maps to 0.
    """
    x = np.asarray(features, np.float32)
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown feature normalization {mode!r}; expected one of {NORMALIZATIONS}")
    if mode == "none" or len(x) == 0:
        return x
    if mode == "global_zscore":
        if stats is None:
            raise ValueError("normalization 'global_zscore' needs the train statistics: pass "
                             "stats=builder.info.metadata['feature_stats']")
        center, scale = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    elif mode == "query_minmax":
        center, scale = x.min(0), np.ptp(x, 0)
    else:  # query_zscore
        center, scale = x.mean(0), x.std(0)
    scale = np.asarray(scale, np.float32)
    return np.where(scale > 0, (x - center) / np.where(scale > 0, scale, 1.0), 0.0).astype(np.float32)
