"""``python -m ranking_jax.main``: the config is locked and type-safe (a misspelled key fails with a did-you-mean
message, a wrong type names the field), on a ConfigDict and through --config.* flags in a subprocess."""

import subprocess
import sys

import pytest

from helpers import ROOT, SMALL_CONFIG


def test_config_locking_typos_and_types():
    ns = {}
    exec(SMALL_CONFIG, ns)
    c = ns["get_config"]()
    c.lock()
    with pytest.raises(AttributeError, match='Did you mean "name"'):
        c.optimizer.nmae = "sam"
    with pytest.raises(TypeError, match="lr"):
        c.optimizer.lr = "fast"
    c.optimizer.lr = 1  # int -> float is allowed
    assert isinstance(c.optimizer.lr, float)


def _main(tmp_path, *flags):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(SMALL_CONFIG)
    return subprocess.run([sys.executable, "-m", "ranking_jax.main", f"--config={cfg}:small",
                           f"--workdir={tmp_path / 'wd'}", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_main_rejects_typo_and_wrong_type(tmp_path):
    r = _main(tmp_path, "--config.optimizer.nmae=sam")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == ('config error: no field \'nmae\': Did you mean "name" instead of '
                                                 '"nmae"?')
    r = _main(tmp_path, "--config.optimzer.name=sam")  # a misspelled section: one line too, no traceback
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ('config error: no field \'optimzer\': Did you mean "optimizer" '
                                                 'instead of "optimzer"?')
    r = _main(tmp_path, "--config.optimizer.lr=fast")
    assert r.returncode != 0 and "could not convert string to float: 'fast'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ranking_jax.main", f"--workdir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--config" in r.stderr
