"""Distillation inputs: models other runs exported, and their scores of training triples.

``config.data.teacher`` names comma-separated folders of exported models (a run's ``export_dir``); their scores of
``data.teacher_per_query`` (positive, hard negative) triples per training query are averaged (Hofstätter et al.'s
T2 mean ensemble), cached by the teachers' content, and written to ``WORKDIR/teacher.tsv`` in the paper's format.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from flax import nnx

from ranking_jax import checkpoint, models, registry, runtime
from ranking_jax import data as data_lib
from ranking_jax.evaluators import score_triples
from ranking_jax.tasks import Context
from ranking_jax.tasks.cache import cached


def load_exported(directory: str | pathlib.Path) -> tuple[nnx.Module, str]:
    """``(model, family)`` a run exported to ``directory`` (its ``export_dir``): a cross-encoder in Hugging Face
    layout (``model.safetensors``) or any model as ``params.npz`` + ``config.json``
    (:func:`ranking_jax.checkpoint.export_params`), whose ``model.name`` is the family."""
    from ml_collections import ConfigDict

    from ranking_jax import train
    directory = pathlib.Path(directory)
    if (directory / "model.safetensors").exists():
        return registry.lookup("models.cross_encoder")(pretrained=directory), "cross_encoder"
    if not (directory / checkpoint.PARAMS_FILE).exists():
        raise FileNotFoundError(f"{directory} holds no exported model (model.safetensors or "
                                f"{checkpoint.PARAMS_FILE}); set config.export_dir in the run that trains it")
    config = ConfigDict(json.loads((directory / "config.json").read_text()))
    split, params = train.split_model(models.from_config(config.model, seed=config.seed, pretrained=False))
    return split.merge(checkpoint.import_params(params, directory)), config.model.name


def teacher_records(config, ctx: Context, c, train_qrels: dict) -> list[dict]:
    """Training records of teacher-scored triples (see the module docstring); ``c`` is the training collection
    (:class:`ranking_jax.tasks.text_ranking.Collection`)."""
    d = config.data
    triples = data_lib.hard_negative_triples(train_qrels, c.ranked(d.train_depth), per_query=d.teacher_per_query,
                                             depth=d.train_depth, seed=0)

    def scores_of(teacher: pathlib.Path) -> np.ndarray:  # cached per teacher, so ensembles reuse them
        if not (teacher / "config.json").is_file():
            raise FileNotFoundError(f"config.data.teacher: {teacher} holds no exported model (config.json); train "
                                    "the teacher with config.export_dir set and name that folder")

        def score(out):
            model, family = load_exported(teacher)
            own = teacher if (teacher / "tokenizer.json").is_file() else None  # else the default (MiniLM) vocabulary
            tokenizer = data_lib.TextTokenizer(own, query_length=d.query_length, doc_length=d.doc_length,
                                               colbert=family == "colbert")
            same = tokenizer.digest == c.query_table.digest  # else the tables' ids mean other words: use the texts
            queries = c.query_table if same else np.asarray(c.query_texts, dtype=object)
            corpus = c.corpus if same else np.asarray(c.corpus_texts, dtype=object)
            np.save(out / "scores.npy", score_triples(model, triples, family=family, queries=queries,
                                                      corpus=corpus, tokenizer=tokenizer,
                                                      batch_size=8 * d.eval_batch_size, mesh=ctx.mesh,
                                                      rules=ctx.rules))

        key = (teacher, c.source, triples, d.query_length, d.doc_length)
        return np.load(cached(config, "teacher-scores", key=key, build=score) / "scores.npy")

    scores = np.mean([scores_of(pathlib.Path(t)) for t in d.teacher.split(",") if t], axis=0)
    if runtime.is_writer():
        data_lib.write_teacher_triples(ctx.workdir / "teacher.tsv", triples, scores, query_ids=c.query_ids,
                                       doc_ids=c.doc_ids)
    return data_lib.teacher_lists((q, p, n, sp, sn) for (q, p, n), (sp, sn) in zip(triples, scores))
