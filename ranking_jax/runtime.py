"""The process layer: ``jax.distributed`` start-up, which process writes, barriers, agreement across processes, and
one writer per workdir.

One run is N processes (hosts) x their local devices; every process runs the same program on its own rows of the
global batch. Only process 0 writes files (metrics, summaries, run files, config.json, exports); every process
takes part in the collectives (train steps, evaluation, orbax saves and restores).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import socket
import time
from typing import Iterator, Mapping

import jax
import numpy as np

_log = logging.getLogger(__name__)

# Environment variables by which jax.distributed.initialize() detects a cluster by itself (SLURM, Open MPI, Cloud
# TPU pod slices and GKE, or an explicit coordinator).
CLUSTER_ENV = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS",
               "JAX_COORDINATOR_ADDRESS")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: int = 300) -> None:
    """Starts ``jax.distributed`` before any computation.

    With ``coordinator_address`` (``HOST:PORT`` of process 0), ``num_processes`` and ``process_id`` given, those;
    without them, jax's own detection when a cluster environment (:data:`CLUSTER_ENV`) is present; else one
    process. CPU processes use Gloo collectives.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("--coordinator_address, --num_processes and --process_id go together: give all three "
                         "(or none, for one process or a cluster jax detects: SLURM, Open MPI, TPU pods)")
    if not any(given) and not any(v in os.environ for v in CLUSTER_ENV):
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if all(given):
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes})")
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_s)
    else:
        jax.distributed.initialize(initialization_timeout=timeout_s)
    _log.info("process %d of %d, %d local devices of %d", jax.process_index(), jax.process_count(),
              jax.local_device_count(), jax.device_count())


def is_writer() -> bool:
    """Whether this process writes files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all arrive (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def max_over_processes(values: Mapping[str, int]) -> dict[str, int]:
    """``values`` with each entry replaced by its maximum over the processes (the same keys everywhere)."""
    if jax.process_count() == 1 or not values:
        return dict(values)
    from jax.experimental import multihost_utils
    keys = sorted(values)
    gathered = multihost_utils.process_allgather(np.asarray([values[k] for k in keys], np.int32))
    return {k: int(v) for k, v in zip(keys, np.max(np.asarray(gathered).reshape(-1, len(keys)), axis=0))}


def to_host(tree):
    """NumPy copies of a tree of global arrays, whole on every process (a collective with several)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def check_writable(directory: str | pathlib.Path) -> None:
    """Creates ``directory`` and a probe file in it, so a run that could not save stops before it starts, with the
    path and the reason (it used to fail at the first checkpoint and then wait 300 s in orbax)."""
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{directory} is not writable ({e.strerror or e}); fix it or choose another --workdir") from None


@contextlib.contextmanager
def workdir_lock(workdir: str | pathlib.Path) -> Iterator[None]:
    """Process 0 holds an exclusive lock on ``workdir/.lock`` while the run lives (released by the OS if the
    process dies); a second run on the same workdir stops at once, naming the first."""
    if not is_writer():
        yield
        return
    path = pathlib.Path(workdir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "an unknown process"
            raise RuntimeError(f"{workdir} is in use by another run ({holder}); wait for it to finish or use "
                               "another --workdir") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
