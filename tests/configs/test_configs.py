"""Every experiment config in configs/ runs 2 steps end to end (data, model, loss, optimizer, evaluators,
checkpoint); swapping the optimizer is one line; the quickstart config resolves its runs."""

import pytest

from helpers import check_two_step_run, load_config, run_config, write_svmlight


@pytest.mark.parametrize("name", ["cross_encoder", "bi_encoder", "colbert", "tk", "prett"])
def test_text_config_two_steps(name, tmp_path):
    config = load_config(name, "runlocal")
    config.data.cache_dir = str(tmp_path / "cache")
    summary = run_config(config, tmp_path / "run")
    check_two_step_run(tmp_path / "run", summary)
    assert (tmp_path / "run" / "rerank.run").stat().st_size > 0
    if name == "bi_encoder":
        assert "retrieval/nDCG@10" in summary["eval_after"]


def test_ltr_config_two_steps(tmp_path):
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor"))
    config.data.cache_dir = str(tmp_path / "cache")
    summary = run_config(config, tmp_path / "run")
    check_two_step_run(tmp_path / "run", summary, measures=("nDCG@1",))


@pytest.mark.parametrize("optimizer", ["sam", "tram"])
def test_optimizer_swap_is_one_line(optimizer, tmp_path):
    config = load_config("ltr_mlp", "runlocal,custom")
    config.data.manual_dir = str(write_svmlight(tmp_path / "letor"))
    config.data.cache_dir = str(tmp_path / "cache")
    config.optimizer.name = optimizer
    summary = run_config(config, tmp_path / "run")
    check_two_step_run(tmp_path / "run", summary, measures=("nDCG@1",))


def test_quickstart_config_resolves():
    config = load_config("quickstart")
    assert sorted(config.runs) == ["bi_encoder", "cross_encoder"]
    assert config.runs.cross_encoder.data.collection == "chatterbot"
    assert config.runs.bi_encoder.optimizer.total_steps == config.runs.bi_encoder.train.num_steps


@pytest.mark.parametrize("arg", ["inbatch", "e2rank"])
def test_bi_encoder_objective_variants_resolve(arg):
    """``bi_encoder.py:inbatch`` / ``:e2rank`` name registered losses whose views a bi-encoder gives (their 2-step
    training runs in tests/losses/test_registered.py)."""
    from ranking_jax import objectives, registry
    config = load_config("bi_encoder", f"runlocal,{arg}")
    objective = objectives.parse(config.loss)
    assert config.model.similarity == "cosine" and "score_matrix" in objective.outputs
    objective.check_model("bi_encoder", registry.entry("models.bi_encoder").meta["outputs"])


def test_bi_encoder_takes_the_pretrained_similarity_and_tk_groups_only_its_kernel_scoring():
    """all-MiniLM-L6-v2 was trained with cosine similarity (its modules normalize): the bi-encoder config keeps it
    unless told; TK's 1e-4 group is the kernel scoring (mixer, kernel alpha and weights), not the transformer's
    Linear kernels, which learn at the base 1e-5 (Hofstätter et al. 2020)."""
    import re

    import jax

    from ranking_jax import models, optim
    from ranking_jax.train import split_model
    config = load_config("bi_encoder", "runlocal")
    assert config.model.similarity is None
    assert models.from_config(config.model, seed=0).similarity == "cosine"
    assert load_config("bi_encoder", "runlocal,dot").model.similarity == "dot"
    tk = load_config("tk", "runlocal")
    _, params = split_model(models.from_config(tk.model, seed=0, pretrained=False))
    labels = optim._labeler([], [(re.compile(rx), f"group_{i}") for i, (rx, _) in enumerate(tk.optimizer.lr_groups)])
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(labels(params))}
    grouped = sorted(k for k, v in flat.items() if v == "group_0")
    assert grouped and all(any(n in k for n in ("mixer", "kernel_alpha", "kernel_weights")) for k in grouped), grouped
    assert any("layers" in k and v == "default" for k, v in flat.items())
