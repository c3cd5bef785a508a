"""Runs one experiment config.

    python -m ranking_jax.main --config configs/x.py[:arg] --workdir DIR [--config.a.b=v ...]

The config is locked and type-safe: a misspelled key fails with a did-you-mean message, a value of
the wrong type with the field and both types. The resolved config is written to DIR/config.json.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/x.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, logs and runs.")
flags.mark_flags_as_required(["config", "workdir"])


def load_module(path: str | pathlib.Path):
    """The Python file ``path`` as a module (config, table and script files are not a package)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(spec: str):
    """``"configs/x.py[:arg]"`` -> that file's ``get_config(arg)`` (what ``--config`` loads, without flags)."""
    path, _, arg = str(spec).partition(":")
    return load_module(path).get_config(arg or None)


def write_config(config, workdir: pathlib.Path) -> pathlib.Path:
    """Writes the resolved config as JSON (:func:`ranking_jax.defaults.config_json`)."""
    from ranking_jax import defaults  # jax-heavy; after the flags parse
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    path.write_text(defaults.config_json(config))
    return path


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines would bury the progress bar
    config = _CONFIG.value
    workdir = pathlib.Path(_WORKDIR.value)
    write_config(config, workdir)
    logging.info("resolved config written to %s", workdir / "config.json")
    from ranking_jax import experiment  # heavy imports after the flags parse
    experiment.run(config, workdir)


def _run() -> None:
    # ml_collections reports a misspelled override as a bare AttributeError traceback; name it instead.
    try:
        app.run(main)
    except AttributeError as e:
        if "Did you mean" in str(e) or "does not exist" in str(e):
            sys.exit(f"config error: {e.args[0]}")
        raise


if __name__ == "__main__":
    _run()
