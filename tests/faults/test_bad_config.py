"""Fault class: a bad config. A misspelled key or section, a wrong type, an out-of-range value, an unknown or malformed
name (registry spec, loss, optimizer, schedule) or a combination the model or task cannot serve is refused before the
run, naming the field and the fix (the closest names, the character, the valid values); a misspelled field or an
out-of-range value on the command line is one line, without a traceback."""

import re
import subprocess
import sys

import pytest

from _optim_problems import nnx_problem
from helpers import ROOT, SMALL_CONFIG, load_config, run_config
from ranking_jax import objectives, optim, registry


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


def test_registry_unknown_name_lists_closest():
    with pytest.raises(registry.RegistryError) as e:
        registry.lookup("losses.sofmax_loss")
    assert "losses.softmax_loss" in str(e.value) and "sofmax_loss" in str(e.value)
    with pytest.raises(registry.RegistryError, match="Closest registered names"):
        registry.lookup("nonsense.thing")


@pytest.mark.parametrize("spec, message", [
    ("losses.softmax_loss(", r"never closed at character 20"),
    ("softmax_loss", "must be 'namespace.name'"),
    ("losses.softmax_loss(reduce_fn=bar)", "Python literal .* or a registry spec"),
])
def test_registry_malformed_specs(spec, message):
    with pytest.raises(registry.RegistryError, match=message):
        registry.lookup(spec)


@pytest.mark.parametrize("spec, message", [
    ("losses.softmax_loss + 0.1 *", "invalid syntax at character 28"),
    ("losses.softmax_loss - losses.listmle_loss", "only '\\+' between terms"),
    ("losses.softmax_loss * losses.listmle_loss", "one numeric weight at character 1"),
    ("0.5 + losses.softmax_loss", "a number alone is not a loss at character 1"),
    ("losses.softmax_loss + metrics.ndcg_metric", "'metrics.ndcg_metric' is not a loss.* at character 23"),
    ("losses.sofmax_loss", "Closest registered names: losses.softmax_loss"),
    ("losses.approx_t12n", "call it, e.g. losses.approx_t12n\\(metrics.ndcg_metric\\)"),
    ("losses.softmax_loss(temperature=0.5", "never closed at character 20"),
])
def test_a_loss_that_does_not_parse_points_at_the_character(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        objectives.parse(spec)
    assert str(e.value).startswith("config.loss:")


def test_a_view_the_model_cannot_produce_names_the_loss_family_and_what_works():
    objective = objectives.parse("losses.softmax_loss + 0.1 * losses.infonce_loss")
    with pytest.raises(ValueError) as e:
        objective.check_model("cross_encoder", ("scores",))
    text = str(e.value)
    assert "losses.infonce_loss" in text and "'matrix'" in text and "'cross_encoder'" in text
    assert "bi_encoder, colbert" in text and "e.g. losses." in text
    objective.check_model("bi_encoder", registry.entry("models.bi_encoder").meta["outputs"])


def test_a_batch_field_the_task_lacks_names_it_and_the_fix():
    objective = objectives.parse("losses.margin_mse_loss")
    with pytest.raises(ValueError, match=r"margin_mse_loss \(view 'teacher'\) .*teacher_scores.*config.data.teacher"):
        objective.check_batch({"labels": 0, "mask": 0}, "the text_ranking task")


def test_make_config_errors_name_the_key_and_the_fix():
    params, loss, _ = nnx_problem()
    cases = [({"name": "adamx"}, "config.optimizer.name='adamx' is unknown; valid: adam, adamw, sgd, lamb"),
             ({"name": "sam", "base": "sam"}, "config.optimizer.base='sam' is unknown"),
             ({"lerning_rate": 1.0}, "config.optimizer.lerning_rate is not an optimizer option"),
             ({"tram": {"targt": "x"}}, "config.optimizer.tram.targt is not an optimizer option"),
             ({"freeze": ("(",)}, "config.optimizer.freeze: invalid regex"),
             ({"freeze": "dense"}, "config.optimizer.freeze: Could not override field 'freeze'"),
             ({"schedule": "cosine", "total_steps": 0}, "config.optimizer.total_steps"),
             ({"schedule": "poly"}, "schedule='poly' is unknown"),
             ({"name": "tram", "tram": {"target": "fisher"}}, "config.optimizer.tram: unknown TRAM target 'fisher'; "
              "valid: prev, init, noise"),
             ({"name": "tram", "tram": {"divergence": "js"}}, "config.optimizer.tram: unknown TRAM divergence"),
             ({"grad_clip_norm": -1.0}, "grad_clip_norm must be >= 0"),
             ({"lr_groups": (("dense", "fast"),)}, "lr_groups must be"),
             ({"sharpness_groups": 2}, "config.optimizer.sharpness_groups is not an optimizer option"),
             ({"lr_groups": (("dense",),)}, "lr_groups must be")]
    for fields, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            optim.make({"optimizer": fields})
    tx = optim.make({"freeze": ("no_such_param",)})
    with pytest.raises(ValueError, match=r"match no parameter; parameter paths look like \['dense/bias'"):
        tx.init(params)


def test_metric_learning_refuses_tram(tmp_path):
    config = load_config("metric_learning", "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    config.optimizer.name = "tram"
    with pytest.raises(ValueError, match="tram.*list scores.*mlp_embedder"):
        run_config(config, tmp_path / "run")
