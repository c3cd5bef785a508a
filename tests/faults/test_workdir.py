"""Fault class: the workdir. Rerunning a workdir with another config is refused, naming the changed fields, unless
--allow_config_change (the old config is kept as config.previous.json); a second run on a workdir that a live run
holds stops at once, naming the holder; a workdir whose checkpoints cannot be written is refused before the run."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, SMALL_CONFIG, load_config, run_config, write_svmlight


def test_config_json_is_written_guarded_and_read_back(tmp_path):
    """``config.json`` holds the resolved config; a workdir refuses another config (naming the fields) unless
    told, keeping the old one; ``defaults.get_config`` reads it back as the same config (tuples stay tuples)."""
    from ranking_jax import defaults, run
    ns = {}
    exec(SMALL_CONFIG, ns)
    c = ns["get_config"]("small")
    c.optimizer.lr = 0.5
    with c.unlocked():
        c.shape = (2, 3)
    run.write_config(c, tmp_path)
    path = tmp_path / "config.json"
    assert json.loads(path.read_text()) == {"seed": 0, "name": "small", "optimizer": {"name": "adam", "lr": 0.5},
                                            "shape": [2, 3]}
    back = defaults.get_config(str(path))
    assert back.shape == (2, 3) and defaults.config_json(back) == path.read_text()
    run.write_config(back, tmp_path)  # the same config: accepted
    c.optimizer.lr = 0.1
    with pytest.raises(run.ConfigChangedError, match=r"optimizer.lr: 0.5 -> 0.1.*--allow_config_change"):
        run.write_config(c, tmp_path)
    run.write_config(c, tmp_path, allow_change=True)
    assert json.loads(path.read_text())["optimizer"]["lr"] == 0.1
    assert json.loads((tmp_path / "config.previous.json").read_text())["optimizer"]["lr"] == 0.5


def test_unwritable_checkpoints_stop_before_the_run(tmp_path):
    """A workdir whose checkpoints/ cannot be written (here a file of that name: permission bits do not stop root)
    is refused before any data is built, naming the path; nothing else is written there."""
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor", features=7))
    config.data.cache_dir = str(tmp_path / "cache")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "checkpoints").write_text("not a folder")
    with pytest.raises(OSError, match=rf"{tmp_path / 'w' / 'checkpoints'} is not writable \(File exists\)"):
        run_config(config, tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["checkpoints"]
    assert not (tmp_path / "cache").exists()


def test_one_run_per_workdir(tmp_path):
    """A second run on a workdir that a live run holds stops at once, naming the holder; the lock goes with it."""
    from ranking_jax import runtime
    with runtime.workdir_lock(tmp_path):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        other = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from ranking_jax import runtime
            with runtime.workdir_lock({str(tmp_path)!r}):
                pass""")], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "is in use by another run" in other.stderr
        assert f'"pid": {os.getpid()}' in other.stderr
    with runtime.workdir_lock(tmp_path):  # released: the next run takes it
        pass
