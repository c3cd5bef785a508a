"""ranking_jax.losses in the registry: config strings resolve to the loss functions with bound options, and every
public loss trains from a config. The test walks the registry: each registered loss (a factory through its
``example``) is grouped with the others that a run of some real config gives the view of, and each group trains
2 steps as one config ``loss = "a + b + ..."``; every term's logged value must be finite. A new public loss that is
not registered, or a view no run gives, fails here."""

import numpy as np
import pytest

from helpers import load_config, metric_rows, run_config, write_svmlight
from ranking_jax import losses, registry, views
from ranking_jax.losses import infonce_loss, kl_distill_loss

# run -> the views its batches and model give
RUNS = {"letor": ("list", "groups"), "metric_learning": ("embeddings",),
        "preference": ("pairs", "rewarded_pairs", "pair_nll", "reward_pairs", "soft_pairs"),
        "in_batch": ("matrix", "e2rank", "curriculum", "propensity_list"), "distillation": ("teacher", "triples")}


def _specs(wanted) -> list[str]:
    out = []
    for name in registry.names("losses"):
        e = registry.entry(name)
        if e.meta.get("view") in wanted:
            out.append(e.meta.get("example", name))
    return out


def test_registry_resolves_config_strings():
    fn = registry.lookup("losses.kl_distill_loss(temperature=2.0)")
    s, t = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    np.testing.assert_allclose(fn(s, t), kl_distill_loss(s, t, temperature=2.0))
    assert registry.lookup("losses.infonce_loss") is infonce_loss


def test_every_public_loss_is_registered_with_a_view_some_run_gives():
    public = {n for n in losses.__all__ if callable(getattr(losses, n))}
    registered = {n.split(".", 1)[1]: registry.entry(n) for n in registry.names("losses")}
    functions = {e.fn.__name__ for e in registered.values()}
    for name in sorted(public - set(losses.HELPERS)):
        assert name in registered or name in functions, f"losses.{name} is public but not registered"
    for name, e in registered.items():
        assert e.meta.get("view") in views.VIEWS, (name, e.meta)
    assert set(views.VIEWS) == {v for vs in RUNS.values() for v in vs}
    assert sum(len(_specs(v)) for v in RUNS.values()) == len(registered)


def _teacher(folder):
    from ranking_jax.models import cross_encoder
    teacher = cross_encoder(pretrained="minilm", num_hidden_layers=1, seed=0)
    teacher.save_pretrained(folder, source="minilm")
    return folder


def _config(run: str, tmp_path):
    if run == "letor":
        config = load_config("ltr_mlp", "runlocal,custom")
        config.data.manual_dir = str(write_svmlight(tmp_path / "letor"))
    elif run == "metric_learning":
        config = load_config("metric_learning", "runlocal")
    elif run == "preference":
        config = load_config("preference", "runlocal,features")
        config.data.reward_model = "minilm"  # MADPO's view reads reward-model scores
    else:
        config = load_config("bi_encoder", "runlocal")
        config.evals.retrieval = False
        config.data.update({"propensities": "popularity", "pseudo_docs": 2, "pseudo_length": 48})
        config.model.num_hidden_layers = 1
        if run == "distillation":
            config.data.update({"teacher": str(_teacher(tmp_path / "teacher")), "teacher_per_query": 1,
                                "list_size": 2})
    config.train.eval_before = False
    return config


@pytest.mark.parametrize("run", sorted(RUNS))
def test_each_registered_loss_trains_from_a_config(run, tmp_path):
    specs = _specs(RUNS[run])
    config = _config(run, tmp_path)
    config.loss = " + ".join(specs)
    run_config(config, tmp_path / "run")
    rows = metric_rows(tmp_path / "run", "train")
    assert [r["step"] for r in rows] == [1, 2]
    names = [k for k in rows[0] if k.startswith("loss/")]
    assert len(names) == len(specs), (names, specs)
    for r in rows:
        assert np.isfinite(r["loss"]) and r["grad_norm"] > 0
        for k in names:
            assert np.isfinite(r[k]), (k, r[k])
