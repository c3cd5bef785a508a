"""``python -m ranking_jax.main``: the config is locked and type-safe (a misspelled key fails with a did-you-mean
message, a wrong type names the field), on a ConfigDict and through --config.* flags in a subprocess."""

import re
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


@pytest.mark.parametrize("key, value, message", [
    ("data.batch_size", 0, "config.data.batch_size must be >= 1 (rows per step), got 0"),
    ("data.list_size", 0, "config.data.list_size must be >= 1 (documents per training list), got 0"),
    ("optimizer.grad_clip_norm", -1.0, "config.optimizer.grad_clip_norm must be >= 0 (0 = off; a negative one "
                                       "flips the gradient), got -1.0"),
    ("optimizer.learning_rate", -1e-3, "config.optimizer.learning_rate must be >= 0 (a negative one ascends)"),
])
def test_out_of_range_values_are_refused_before_the_run(tmp_path, key, value, message):
    from helpers import load_config, run_config, write_svmlight
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor", features=7))
    section, field = key.split(".")
    config[section][field] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        run_config(config, tmp_path / "wd")
    assert not (tmp_path / "wd").exists()  # refused before the workdir was touched


def test_out_of_range_value_is_one_line_from_the_command_line(tmp_path):
    from helpers import write_svmlight
    r = subprocess.run([sys.executable, "-m", "ranking_jax.main", "--config=configs/ltr_mlp.py:runlocal,custom",
                        f"--workdir={tmp_path / 'wd'}", f"--config.data.manual_dir={write_svmlight(tmp_path / 'l')}",
                        "--config.data.list_size=0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("config error: config.data.list_size must be >= 1 (documents per "
                                                 "training list), got 0")
