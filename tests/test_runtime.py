"""ranking_jax.runtime (jax.distributed): one run, many processes. Local CPU processes with Gloo collectives stand
in for hosts (4 devices each).

* A sharded forward with per-process input rows equals the single-process result.
* ``configs/cross_encoder.py:runlocal`` as 2 processes x 4 devices ends with the metrics of 1 process x 8 devices
  (1e-4); only process 0 writes (one metrics.jsonl, no repeated rows). Killing one process mid-run and rerunning
  both resumes from the last checkpoint and finishes with the uninterrupted run's numbers.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers import ROOT, metric_rows
from _models import tiny_cross_encoder, tiny_pair_batch

WORKER = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from ranking_jax import runtime
    runtime.initialize(f"127.0.0.1:{port}", 2, pid, timeout_s=120)
    import numpy as np
    from flax import nnx
    from ranking_jax import sharding
    from _models import tiny_cross_encoder, tiny_pair_batch
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    model, batch = tiny_cross_encoder(), tiny_pair_batch()
    rows = slice(pid * 4, (pid + 1) * 4)                       # this process's queries
    local = {k: v[rows] for k, v in batch.items()}
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.device_put(params, sharding.param_shardings(params, mesh, sharding.DEFAULT_RULES))
    gbatch = sharding.shard_batch(local, mesh)
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.DEFAULT_RULES):
        f = jax.jit(lambda p, b: nnx.merge(graphdef, p, rest)(b), out_shardings=sharding.replicated(mesh))
        scores = f(params, gbatch)
    np.save(out, np.asarray(scores.addressable_data(0)))
""")
STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    tests_dir = pathlib.Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests_dir.parent), str(tests_dir)]),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _wait(procs, timeout=400) -> None:
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert all(p.returncode == 0 for p in procs), "\n".join(str(x)[-4000:] for x in logs)


def test_two_process_sharded_forward_equals_single_process(tmp_path):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(pid), str(tmp_path / f"s{pid}.npy")],
                              env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for pid in range(2)]
    _wait(procs, 240)
    model, batch = tiny_cross_encoder(), tiny_pair_batch()
    single = np.asarray(model(batch))
    for pid in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"s{pid}.npy"), single, atol=1e-5)


def _command(workdir, cache, extra=()):
    return [sys.executable, "-m", "ranking_jax.main", "--config=configs/cross_encoder.py:runlocal",
            f"--workdir={workdir}", f"--config.data.cache_dir={cache}", f"--config.train.num_steps={STEPS}",
            "--config.train.checkpoint_every=2", "--config.train.eval_every=3", "--config.train.log_every=1",
            "--config.optimizer.total_steps=6", *extra]


def _start(workdir, cache, processes: int):
    if processes == 1:
        return [subprocess.Popen(_command(workdir, cache), cwd=ROOT, env=_env(8), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)]
    port = _free_port()
    return [subprocess.Popen(_command(workdir, cache, [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                                       f"--process_id={pid}"]),
                             cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for pid in range(2)]


def _summary(workdir):
    return json.loads((workdir / "summary.json").read_text())


@pytest.mark.slow
def test_two_processes_equal_one_process_and_resume_after_a_kill(tmp_path):
    cache = tmp_path / "cache"
    _wait(_start(tmp_path / "one", cache, 1))
    _wait(_start(tmp_path / "two", cache, 2))
    one, two = _summary(tmp_path / "one"), _summary(tmp_path / "two")
    assert one["eval_after"].keys() == two["eval_after"].keys() and one["eval_after"]
    for key, value in one["eval_after"].items():
        assert two["eval_after"][key] == pytest.approx(value, abs=1e-4), key
    rows_one, rows_two = metric_rows(tmp_path / "one", "train"), metric_rows(tmp_path / "two", "train")
    assert [r["step"] for r in rows_two] == list(range(1, STEPS + 1))  # one writer: each step once
    np.testing.assert_allclose([r["loss"] for r in rows_two], [r["loss"] for r in rows_one], atol=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".jsonl") == ["metrics.jsonl"]

    killed = tmp_path / "killed"
    procs = _start(killed, cache, 2)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "2" / "_CHECKPOINT_METADATA").exists() and time.time() < deadline:
        assert all(p.poll() is None for p in procs), "a process ended before the kill"
        time.sleep(0.05)
    os.kill(procs[1].pid, signal.SIGKILL)  # one host dies; its peer cannot go on alone
    time.sleep(1)
    procs[0].kill()
    for p in procs:
        p.communicate()
    assert not (killed / "summary.json").exists()
    _wait(_start(killed, cache, 2))
    resumed = _summary(killed)
    assert resumed["start"] == "workdir" and resumed["first_step"] >= 2
    for key, value in two["eval_after"].items():
        assert resumed["eval_after"][key] == pytest.approx(value, abs=1e-6), key
    assert [r["step"] for r in metric_rows(killed, "train")] == list(range(1, STEPS + 1))
