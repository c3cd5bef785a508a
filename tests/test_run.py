"""ranking_jax.run: ``WORKDIR/config.json`` is the resolved config and ``--config WORKDIR/config.json`` replays the
run (the same metrics at every step). Its guard against another config, its read-back by ``defaults.get_config``
and the refusal of an unwritable workdir: tests/faults/test_workdir.py."""

from helpers import load_config, metric_rows, run_config, write_svmlight


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
