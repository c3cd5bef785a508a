"""Runs one experiment config, on one process or many.

    python -m ranking_jax.main --config configs/x.py[:arg] --workdir DIR [--config.a.b=v ...]
    python -m ranking_jax.main --config OLD_WORKDIR/config.json --workdir DIR      # replays a run
    python -m ranking_jax.main ... --coordinator_address HOST:PORT --num_processes N --process_id I

The config is locked and type-safe: a misspelled key fails with a did-you-mean message, a value of the wrong type
with the field and both types. The config that runs (with the fields its task resolved) is written to
DIR/config.json; a DIR that holds a run of another config is refused unless --allow_config_change. Without the
three process flags, a cluster that jax detects (SLURM, Open MPI, Cloud TPU pods) starts every process; else one.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config: configs/x.py[:arg] or a run's "
                                          "config.json.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, logs and runs.")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False, "Continue a workdir whose config.json differs.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
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
    """``"configs/x.py[:arg]"`` -> that file's ``get_config(arg)``; ``"DIR/config.json"`` -> the saved config."""
    path, _, arg = str(spec).partition(":")
    if path.endswith(".json"):
        from ranking_jax import defaults
        return defaults.get_config(path)
    return load_module(path).get_config(arg or None)


def _json_configs(argv: list[str]) -> list[str]:
    """``--config X.json`` -> ``--config <defaults.py>:X.json`` (its ``get_config`` reads a saved config)."""
    defaults_py = pathlib.Path(__file__).with_name("defaults.py")
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-config") and i + 1 < len(argv) and argv[i + 1].endswith(".json"):
            out += [arg, f"{defaults_py}:{argv[i + 1]}"]
            i += 2
            continue
        if arg.startswith(("--config=", "-config=")) and arg.endswith(".json"):
            name, _, value = arg.partition("=")
            arg = f"{name}={defaults_py}:{value}"
        out.append(arg)
        i += 1
    return out


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines would bury the progress bar
    from ranking_jax import process, runtime  # jax-heavy imports after the flags parse
    process.enable_compilation_cache()
    runtime.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from ranking_jax import run
    run.run(_CONFIG.value, pathlib.Path(_WORKDIR.value), allow_config_change=_ALLOW_CHANGE.value)


def _run() -> None:
    # A config mistake is reported as one message, not a traceback: ml_collections' misspelled override (a bare
    # AttributeError), a config the workdir refuses, a config value the run rejects. A fault of the environment
    # (disk full, a checkpoint error) ends with one line saying what is kept and how to recover.
    from ranking_jax.run import ConfigChangedError
    try:
        app.run(main, argv=_json_configs(sys.argv))
    except (AttributeError, KeyError) as e:  # a misspelled key, or a misspelled section (a KeyError)
        message = str(e.args[0]) if e.args else ""
        if message[:1] == message[-1:] == "'" and "\\n" in message:  # ml_collections' KeyError text, quoted
            message = ast.literal_eval(message)
        if "Did you mean" in message or "does not exist" in message:
            sys.exit(f"config error: no field {message.replace(chr(10), ': ', 1)}")
        raise
    except ConfigChangedError as e:
        sys.exit(f"error: {e}")
    except Exception as e:
        if isinstance(e, ValueError) and str(e).startswith("config."):
            sys.exit(f"config error: {e}")
        from ranking_jax import faults
        summary = faults.summarize(e, pathlib.Path(_WORKDIR.value or "."))
        if summary is None:
            raise
        faults.exit_with(summary)


if __name__ == "__main__":
    _run()
