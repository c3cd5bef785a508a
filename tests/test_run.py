"""ranking_jax.run: ``WORKDIR/config.json`` is the resolved config, guarded against another config unless told,
read back by ``defaults.get_config`` as the same config, and ``--config WORKDIR/config.json`` replays the run (the
same metrics at every step)."""

import json

import pytest

from helpers import SMALL_CONFIG, load_config, metric_rows, run_config, write_svmlight


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


def test_config_json_replays_the_run(tmp_path):
    """The task resolves its fields (the feature count) before ``config.json`` is written, and ``--config
    WORKDIR/config.json`` reruns the same run: the same metrics at every step. Rerunning the first workdir with a
    changed config is refused unless told."""
    import json
    import subprocess
    import sys

    from helpers import ROOT
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor", features=7))
    config.data.cache_dir = str(tmp_path / "cache")
    first = run_config(config, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"]["num_features"] == 7 and saved["loss"] == config.loss
    cmd = [sys.executable, "-m", "ranking_jax.main", f"--config={tmp_path / 'a' / 'config.json'}"]
    replay = subprocess.run(cmd + [f"--workdir={tmp_path / 'b'}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["eval_after"] == first["eval_after"]
    assert [r["loss"] for r in metric_rows(tmp_path / "b", "train")] == \
        [r["loss"] for r in metric_rows(tmp_path / "a", "train")]
    assert (tmp_path / "b" / "config.json").read_text() == (tmp_path / "a" / "config.json").read_text()
    changed = subprocess.run(cmd + [f"--workdir={tmp_path / 'a'}", "--config.optimizer.learning_rate=0.5"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert changed.returncode != 0 and "optimizer.learning_rate: 0.001 -> 0.5" in changed.stderr
    assert "--allow_config_change" in changed.stderr


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
