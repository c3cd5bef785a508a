"""Shared test helpers: experiment configs by name, a small config file, small text files and SVMlight collections,
random TREC qrels/runs, a run's metrics.jsonl and the checks of a 2-step run, the train loop on synthetic LTR lists
(an MLP ranker, a softmax cross-entropy written out), and scripts/ loaded as modules with a small BEIR collection."""

import functools
import json
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


def write_text(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    """``folder / name`` holding ``text``, UTF-8."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
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


# ---------------------------------------------------------------- the train loop on synthetic lists

class SyntheticLists:
    """Deterministic LTR batches: batch i depends only on (seed, i); state is the next index."""

    def __init__(self, *, seed=0, batch=8, list_size=6, features=5, nan_at=None):
        self.seed, self.batch, self.list_size, self.features, self.nan_at = seed, batch, list_size, features, nan_at
        self.index = 0
        self.w = np.random.default_rng(123).normal(size=features)

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.index])
        x = rng.normal(size=(self.batch, self.list_size, self.features)).astype(np.float32)
        labels = np.clip(np.round(x @ self.w + rng.normal(scale=0.3, size=x.shape[:2])), 0, 4).astype(np.float32)
        mask = np.ones(x.shape[:2], bool)
        mask[:, -1] = rng.random(self.batch) < 0.5
        if self.nan_at is not None and self.index == self.nan_at:
            x[0, 0, 0] = np.nan
            mask[0, 0] = True
        self.index += 1
        return {"features": x, "labels": labels * mask, "mask": mask}

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])


def softmax_ce(scores, labels, *, where):
    """Listwise softmax cross-entropy written out here (independent of ranking_jax.losses)."""
    import jax
    import jax.numpy as jnp
    scores = jnp.where(where, scores, -1e9)
    logp = jax.nn.log_softmax(scores, axis=-1)
    return jnp.mean(-jnp.sum(jnp.where(where, labels * logp, 0.0), -1))


@functools.cache
def softmax_ce_objective():
    """``softmax_ce`` as a ranking_jax objective (one object per process)."""
    from ranking_jax import objectives
    return objectives.Objective.of(softmax_ce)


def mlp_ranker(seed=0):
    """``train.split_model`` of a small MLP ranker of ``SyntheticLists``' 5 features: (model, params)."""
    from flax import nnx

    from ranking_jax import train
    from ranking_jax.models.mlp import MlpRanker
    with nnx.use_eager_sharding(False):
        return train.split_model(MlpRanker(5, hidden=(16, 8), dropout=0.0, rngs=nnx.Rngs(seed)))


_SCHEDULE_KEYS = ("log_every", "eval_every", "checkpoint_every", "eval_before", "accum_steps")


def train_synthetic(workdir, steps, *, data=None, log_every=1, **kw):
    """The summary of ``train.train_and_evaluate`` of ``mlp_ranker()`` with Adam on ``data`` (``SyntheticLists()``)
    for ``steps`` steps in ``workdir``; schedule fields and other keywords are passed on."""
    import optax

    from ranking_jax import sharding, train
    model, params = mlp_ranker()
    mesh = sharding.make_mesh([("data", -1), ("model", 2)])
    schedule = train.Schedule(num_steps=steps, log_every=log_every,
                              **{k: kw.pop(k) for k in _SCHEDULE_KEYS if k in kw})
    return train.train_and_evaluate(
        workdir=workdir, model=model, params=params, tx=optax.adam(1e-2), objective=softmax_ce_objective(),
        data=data or SyntheticLists(), mesh=mesh, rules=sharding.DEFAULT_RULES, schedule=schedule, progress=False,
        **kw)


# ---------------------------------------------------------------- scripts/

def load_script(name: str):
    """``scripts/<name>.py`` imported as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def teacher_collection(tmp_path_factory) -> dict:
    """A BEIR collection of 10 documents, 3 queries and 3 training judgments (``root``, a --manual_dir) prepared
    under ``data_dir``; ``src`` holds its data sources."""
    from ranking_jax import data
    root = tmp_path_factory.mktemp("src")
    (root / "qrels").mkdir()
    docs = [{"_id": f"doc{i}", "text": f"passage {i} about topic {i % 3}"} for i in range(10)]
    queries = [{"_id": f"q{i}", "text": f"topic {i}"} for i in range(3)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "train.tsv").write_text("q0\tdoc0\t1\nq1\tdoc1\t1\nq2\tdoc5\t1\n")
    data_dir = tmp_path_factory.mktemp("tfds")
    src = data.prepare(data.Beir, config="custom", data_dir=data_dir, manual_dir=root).as_data_source()
    return {"root": root, "data_dir": data_dir, "src": src}
