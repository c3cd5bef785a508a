"""Shared test helpers: experiment configs by name, small SVMlight collections, a run's metrics.jsonl."""

import pathlib

import numpy as np

from ranking_jax import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
    """``configs/<name>.py``'s ``get_config(arg)``."""
    return main.load_config(f"{ROOT / 'configs' / name}.py" + (f":{arg}" if arg else ""))


def write_svmlight(folder: pathlib.Path, *, queries=6, docs=12, features=5, seed=0) -> pathlib.Path:
    """``{train,vali,test}.txt`` with graded labels from a linear model of the features (letor ``custom``)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "vali", "test"):
        lines = []
        for q in range(queries):
            x = rng.normal(size=(docs, features))
            y = np.clip(np.round(x @ w), 0, 4).astype(int)
            lines += [f"{y[i]} qid:{split}{q} " + " ".join(f"{j + 1}:{x[i, j]:.5f}" for j in range(features))
                      for i in range(docs)]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def run_config(config, workdir: pathlib.Path, **kw) -> dict:
    """``ranking_jax.run.run_one`` without a progress bar: the summary of a run of ``config`` in ``workdir``."""
    from ranking_jax import run
    return run.run_one(config, workdir, progress=False, **kw)


def cache_entry(config, name: str, source: pathlib.Path | None = None) -> pathlib.Path:
    """The one content-keyed cache folder of artifact ``name`` under ``config.data.cache_dir`` (built from
    ``source``, when given)."""
    from ranking_jax.tasks import cache
    found = sorted(p for p in cache.root(config).glob(f"{name}-*") if (p / "KEY.json").exists()
                   and (source is None or str(pathlib.Path(source).resolve()) in (p / "KEY.json").read_text()))
    assert len(found) == 1, (name, found)
    return found[0]


def metric_rows(workdir: pathlib.Path, split: str | None = None) -> list[dict]:
    """The rows of ``workdir/metrics.jsonl`` (of one split, when given)."""
    from ranking_jax.writers import read_metrics
    return [r for r in read_metrics(workdir) if split is None or r["split"] == split]
