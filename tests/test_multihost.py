"""Two local JAX processes (4 CPU devices each, Gloo collectives) form one 8-device mesh; a sharded
cross-encoder forward with per-process input rows equals the single-process result."""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np

from test_encoder import _tiny_cross_encoder, tiny_pair_batch

WORKER = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=120)
    import numpy as np
    from flax import nnx
    from ranking_jax import sharding
    from test_encoder import _tiny_cross_encoder, tiny_pair_batch
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    model, batch = _tiny_cross_encoder(), tiny_pair_batch()
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sharded_forward_equals_single_process(tmp_path):
    tests_dir = pathlib.Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests_dir.parent), str(tests_dir)]))
    env.pop("XLA_FLAGS", None)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(pid), str(tmp_path / f"s{pid}.npy")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for pid in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-4000:]

    model, batch = _tiny_cross_encoder(), tiny_pair_batch()
    single = np.asarray(model(batch))
    for pid in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"s{pid}.npy"), single, atol=1e-5)
