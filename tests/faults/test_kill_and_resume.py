"""Fault class: a killed run. SIGKILL a run at an arbitrary moment (twice here), rerun the same command: it resumes
from the last checkpoint (train state and data iterator state) and ends bit-identical to an uninterrupted run. A
2-process run with one host killed resumes the same way: tests/test_runtime.py (it also checks 2 processes = 1)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import jax

from helpers import ROOT, metric_rows, write_svmlight

STEPS = 150


def _command(workdir, data, cache):
    return [sys.executable, "-m", "ranking_jax.main", "--config=configs/ltr_mlp.py:runlocal,custom",
            f"--workdir={workdir}", f"--config.data.manual_dir={data}", f"--config.data.cache_dir={cache}",
            f"--config.train.num_steps={STEPS}", "--config.train.checkpoint_every=5", "--config.train.eval_every=0",
            "--config.train.log_every=1", "--config.model.dropout=0.1"]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # a (data=2) mesh in the child processes
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _final_params(workdir: pathlib.Path) -> list[np.ndarray]:
    restored = ocp.PyTreeCheckpointer().restore((workdir / "checkpoints" / str(STEPS) / "state").absolute())
    return [np.asarray(x) for x in jax.tree.leaves(restored["params"])]


def _steps_logged(workdir: pathlib.Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip().endswith("}")]
    return max((r["step"] for r in rows if r["split"] == "train"), default=0)


def test_sigkill_then_rerun_gives_identical_parameters(tmp_path):
    data = write_svmlight(tmp_path / "letor", queries=10, docs=16)
    cache = tmp_path / "cache"
    ref = subprocess.run(_command(tmp_path / "ref", data, cache), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]

    killed = tmp_path / "killed"
    for target in (23, 71):  # two kills: mid-interval, after checkpoints 20 and 70
        proc = subprocess.Popen(_command(killed, data, cache), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while _steps_logged(killed) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed; raise STEPS"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _steps_logged(killed) < STEPS
    rerun = subprocess.run(_command(killed, data, cache), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    for a, b in zip(_final_params(tmp_path / "ref"), _final_params(killed), strict=True):
        np.testing.assert_array_equal(a, b)
    rows, ref_rows = metric_rows(killed, "train"), metric_rows(tmp_path / "ref", "train")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
