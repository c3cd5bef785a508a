"""Orbax checkpoints: asynchronous, keep-N, restored straight into the target shardings.

Resume order (``resolve_start``): (1) the workdir's latest checkpoint, (2) ``config.resume`` (another
run's checkpoint directory), (3) a fresh start ("scratch": the model builder's weights, pretrained ones when
``model.pretrained`` names them). A checkpoint holds the train state and the data iterator's state, so a run killed
at any moment (SIGKILL included) and restarted with the same command continues exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from ranking_jax import defaults

_log = logging.getLogger(__name__)


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs carrying each leaf's concrete sharding (orbax cannot restore to an AbstractMesh)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """Saves ``{"state": train state, "data": iterator state, "meta": json}`` under ``directory``."""

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               cleanup_tmp_directories=True,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, *, data_state: dict | None = None, meta: dict | None = None,
             force: bool = False) -> bool:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state or {}),
                                  meta=ocp.args.JsonSave(meta or {}))
        return self._manager.save(step, args=args, force=force)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict, dict]:
        """Restores into ``target``'s structure and shardings; returns (state, data_state, meta)."""
        step = self._manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finalized checkpoint in {self.directory}")
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(target)), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a run starts: ``source`` is 'workdir', 'resume' or 'scratch' (the model builder's weights)."""
    source: str
    directory: pathlib.Path | None = None
    step: int | None = None


def resolve_start(workdir: str | pathlib.Path, *, resume: str = "") -> Start:
    """The resume order: workdir checkpoint > ``resume`` checkpoint dir > scratch."""
    own = pathlib.Path(workdir) / "checkpoints"
    if own.is_dir():
        step = ocp.CheckpointManager(own.absolute()).latest_step()
        if step is not None:
            return Start("workdir", own, step)
    if resume:
        path = pathlib.Path(resume)
        path = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        step = ocp.CheckpointManager(path.absolute()).latest_step() if path.is_dir() else None
        if step is None:
            raise FileNotFoundError(f"config.resume={resume!r} holds no finalized checkpoint; point it at a "
                                    "workdir or its checkpoints/ directory, or set it to ''")
        return Start("resume", path, step)
    return Start("scratch")


# ------------------------------------------------------------------------ parameters of a finished run
PARAMS_FILE = "params.npz"


def export_params(params: Any, directory: str | pathlib.Path, *, config: Any) -> pathlib.Path:
    """Writes ``params.npz`` (one array per parameter path, :func:`jax.tree_util.keystr`) and the run's
    ``config.json`` to ``directory``: a model without a Hugging Face layout (e.g. an MLP reward model), which
    ``ranking_jax.tasks.distillation.load_exported`` rebuilds."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    np.savez(directory / PARAMS_FILE, **{jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves})
    (directory / "config.json").write_text(defaults.config_json(config))
    return directory


def import_params(params: Any, directory: str | pathlib.Path) -> Any:
    """``params`` (the template's structure) with the arrays of :func:`export_params`'s ``params.npz``."""
    path = pathlib.Path(directory) / PARAMS_FILE
    with np.load(path) as saved:
        stored = {k: saved[k] for k in saved.files}

    def take(key_path, leaf):
        key = jax.tree_util.keystr(key_path)
        if key not in stored or stored[key].shape != leaf.shape:
            raise ValueError(f"{path}: parameter {key} {tuple(leaf.shape)} is "
                             f"{'missing' if key not in stored else f'stored as {stored[key].shape}'}; was it "
                             "exported from a model of this config?")
        return stored[key].astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(take, params)
