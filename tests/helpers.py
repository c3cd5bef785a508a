"""Shared test helpers: experiment configs by name, a small config file, small SVMlight collections, random TREC
qrels/runs, a run's metrics.jsonl and the checks of a 2-step run."""

import pathlib
import textwrap

import numpy as np

from ranking_jax import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
    """``configs/<name>.py``'s ``get_config(arg)``."""
    return main.load_config(f"{ROOT / 'configs' / name}.py" + (f":{arg}" if arg else ""))


# The source of a small config file (``get_config(arg)``) for the config-flag and config.json tests.
SMALL_CONFIG = textwrap.dedent('''
    from ml_collections import ConfigDict
    def get_config(arg=None):
        c = ConfigDict()
        c.seed = 0
        c.name = arg or "default"
        c.optimizer = ConfigDict({"name": "adam", "lr": 1e-3})
        return c
''')


def write_lines(path: pathlib.Path, lines) -> pathlib.Path:
    """``path`` (parent folders created) holding ``lines``, one a line, UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


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


def random_trec_case(seed):
    """Random TREC qrels/run with tied scores, negative and all-zero judgments, judged queries absent from the run
    and run queries without judgments; doc ids of mixed length and case so that string order matters."""
    rng = np.random.default_rng(seed)
    pool = [f"d{i}" for i in range(40)] + [f"D{i:03d}" for i in range(20)] + ["x", "x1", "x10", "y2"]
    qrels, run = {}, {}
    for q in range(14):
        qid = f"q{q}"
        judged = rng.choice(pool, size=rng.integers(1, 18), replace=False)
        rels = rng.choice([-1, 0, 0, 0, 1, 1, 2, 3], size=len(judged))
        if q == 3:
            rels[:] = 0
        qrels[qid] = {d: int(r) for d, r in zip(judged, rels)}
    for q in list(range(12)) + [20, 21]:  # q12, q13 judged but not run; q20, q21 run but not judged
        qid = f"q{q}"
        docs = rng.choice(pool, size=rng.integers(1, 40), replace=False)
        run[qid] = {d: float(np.round(rng.normal(), 1)) for d in docs}  # one decimal: many ties
    return qrels, run


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


def check_two_step_run(workdir: pathlib.Path, summary: dict, measures=("nDCG@10",)):
    """A 2-step run of an experiment config in ``workdir``: finite train losses with a gradient at steps 1 and 2,
    every evaluation metric in [0, 1] and ``measures[0]`` among them, a checkpoint at step 2 and a curves plot."""
    train_rows = metric_rows(workdir, "train")
    assert [r["step"] for r in train_rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in train_rows)
    assert summary["final_step"] == 2
    for name, value in summary["eval_after"].items():
        assert 0.0 <= value <= 1.0, (name, value)
    assert any(k.endswith(measures[0]) for k in summary["eval_after"])
    assert (workdir / "checkpoints" / "2").is_dir()
    assert (workdir / "curves.png").stat().st_size > 1000


def check_train_rows(workdir: pathlib.Path) -> list[dict]:
    """The train rows of a 2-step run in ``workdir`` (finite losses with a gradient) and its step-2 checkpoint."""
    train = [r for r in metric_rows(workdir) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in train)
    assert (workdir / "checkpoints" / "2").is_dir()
    return train
