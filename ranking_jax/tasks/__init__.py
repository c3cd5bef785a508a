"""Tasks: what a run trains on and how it is evaluated. One module per task, each registered as ``tasks.<name>``
(``config.task``) and called ``task(config, objective, ctx) -> Task``.

A task builds its data (content-keyed caches, :mod:`ranking_jax.tasks.cache`), its batches with the fields the
objective's views read, its evaluators, and the baselines that bracket the effect (e.g. the first stage's own
ranking). It resolves the config fields it determines (``model_updates``, e.g. a feature count, declared where it
registers as ``resolves``) so that the config written to ``config.json`` is the one that ran.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import jax


@dataclasses.dataclass
class Context:
    """What every task gets besides the config and objective: the run's folder and the device mesh."""
    workdir: pathlib.Path
    mesh: jax.sharding.Mesh
    rules: tuple


@dataclasses.dataclass
class Task:
    """``train_data`` iterates this process's host batches (with ``get_state``/``set_state``); ``evaluators`` map
    names to ``evaluator(model) -> metrics``; ``baselines`` are fixed reference results (``{name: metrics}``);
    ``model_updates`` are ``config.model`` fields the data determined."""
    train_data: Any
    evaluators: dict[str, Callable]
    baselines: dict[str, dict] = dataclasses.field(default_factory=dict)
    model_updates: dict[str, Any] = dataclasses.field(default_factory=dict)


from ranking_jax.tasks import letor, metric_learning, preference, text_ranking  # noqa: E402,F401  (registration)
