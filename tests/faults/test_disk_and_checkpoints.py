"""Fault class: the disk and the checkpoints. A run whose file system fills up (a real one: a 60 KiB tmpfs in a user
and mount namespace) or whose checkpoint cannot be restored ends with one line saying what failed, where, what is
kept and how to recover, after hundreds of lines from orbax's threads; following that line recovers."""

import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, write_svmlight

_NAMESPACES = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt || mount -t tmpfs -o size=1m tmpfs /tmp"],
    capture_output=True).returncode == 0


def _command(tmp_path, workdir):
    return [sys.executable, "-m", "ranking_jax.main", "--config=configs/ltr_mlp.py:runlocal,custom",
            f"--config.data.manual_dir={write_svmlight(tmp_path / 'letor', features=7)}",
            f"--config.data.cache_dir={tmp_path / 'cache'}", f"--workdir={workdir}"]


@pytest.mark.skipif(not _NAMESPACES, reason="needs unprivileged user and mount namespaces (unshare -rm) for a tmpfs")
def test_disk_full_is_the_last_line_and_a_rerun_with_space_resumes(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = " ".join(f"'{a}'" for a in _command(tmp_path, mnt / "w"))
    script = (f"mount -t tmpfs -o size=60k tmpfs '{mnt}' && {{ {run} > '{tmp_path}/full.out' 2>&1; "
              f"echo $? > '{tmp_path}/full.rc'; mount -o remount,size=64m '{mnt}' && {run} > '{tmp_path}/rerun.out' "
              f"2>&1; echo $? > '{tmp_path}/rerun.rc'; cp -r '{mnt}/w' '{tmp_path}/kept'; }}")
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, timeout=600, check=True)
    full = (tmp_path / "full.out").read_text().splitlines()
    assert (tmp_path / "full.rc").read_text().strip() == "1"
    assert full[-1].startswith(f"error: disk full writing {mnt / 'w'}/"), full[-3:]
    assert "free of 60.0 KiB on its file system" in full[-1]
    assert full[-1].endswith("free space and rerun the same command to resume")
    assert len(full) > 50  # the cause was buried under orbax's reports; it is the last line now
    rerun = (tmp_path / "rerun.out").read_text()
    assert (tmp_path / "rerun.rc").read_text().strip() == "0", rerun[-2000:]
    assert (tmp_path / "kept" / "summary.json").is_file() and (tmp_path / "kept" / "checkpoints" / "2").is_dir()


def test_a_broken_checkpoint_names_its_folder_and_moving_it_away_recovers(tmp_path):
    command = _command(tmp_path, tmp_path / "w")
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    step = tmp_path / "w" / "checkpoints" / "2"
    chunks = [p for p in (step / "state").rglob("*") if p.parent.name == "d"]  # the OCDBT data files
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(chunk.read_bytes()[:20])
    broken = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    last = broken.stderr.splitlines()[-1]
    assert broken.returncode == 1
    assert last.startswith(f"error: restoring the checkpoint {step} failed (ValueError: OUT_OF_RANGE: "), last
    assert last.endswith("move that folder away to resume from the step before, or start in another --workdir")
    step.rename(tmp_path / "broken")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert step.is_dir()


def test_other_exceptions_keep_their_traceback(tmp_path):
    """Only faults of the environment are summarized: a bug's exception is left alone (None)."""
    import errno

    from ranking_jax import faults
    assert faults.summarize(ValueError("a bug"), tmp_path) is None
    assert faults.summarize(KeyError("x"), tmp_path) is None
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.jsonl"))
    assert faults.summarize(full, tmp_path).startswith(f"error: disk full writing {tmp_path / 'metrics.jsonl'} (")
    denied = OSError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    assert faults.summarize(denied, tmp_path) == (
        f"error: cannot write {tmp_path / 'x'} (Permission denied); no checkpoint was complete; fix the permissions "
        "and rerun the same command to resume")
