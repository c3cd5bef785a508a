"""Learning to rank over feature vectors (SVMlight/LETOR files, ``letor`` builder): per-query normalized
features, sampled training lists, re-ranking evaluation of every test list beside a random and the best possible
re-order of it (the baselines)."""

from __future__ import annotations

import pathlib

from ranking_jax import data as data_lib
from ranking_jax import registry
from ranking_jax.evaluators import evaluate_baselines
from ranking_jax.tasks import Context, Task
from ranking_jax.tasks.cache import prepared


@registry.register("tasks.letor", resolves=("model.num_features",))
def letor(config, objective, ctx: Context) -> Task:
    """``data.letor_config`` from ``data.manual_dir`` (or its download); the model's input width is the data's
    feature count (``model.num_features``)."""
    d = config.data
    source = pathlib.Path(d.manual_dir) if d.manual_dir else f"download:{d.letor_config}"
    src = prepared(config, data_lib.Letor, name="letor", builder_config=d.letor_config, source=source,
                   manual_dir=d.manual_dir or None).as_data_source()
    train_records = data_lib.letor_records(src[d.train_split], list_size=d.list_size, train=True,
                                           normalization=d.normalization)
    eval_records = data_lib.letor_records(src[d.eval_split], list_size=d.eval_list_size, train=False,
                                          normalization=d.normalization)
    train_data = data_lib.letor_pipeline(train_records, batch_size=d.batch_size, list_size=d.list_size,
                                         train=True, seed=config.seed).iterator()
    batches = data_lib.letor_pipeline(eval_records, batch_size=d.eval_batch_size, list_size=d.eval_list_size,
                                      train=False)
    query_ids = [str(q) for q in range(len(src[d.eval_split]))]
    qrels = {}
    for r in eval_records:
        for doc, lab in zip(r["doc_index"].tolist(), r["labels"].tolist()):
            qrels.setdefault(str(r["query_index"]), {})[f"{r['query_index']}-{doc}"] = int(lab)
    evaluators = {"rerank": registry.lookup("evaluators.rerank")(
        batches, query_ids=query_ids, doc_id=lambda q, doc: f"{q}-{doc}", qrels=qrels,
        measures=config.evals.measures, mesh=ctx.mesh, rules=ctx.rules, run_path=ctx.workdir / "rerank.run")}
    in_file_order = {q: {doc: -float(i) for i, doc in enumerate(docs)} for q, docs in qrels.items()}
    baselines = evaluate_baselines(in_file_order, qrels=qrels, measures=config.evals.measures, seed=config.seed,
                                   directory=ctx.workdir, first_stage=False)
    return Task(train_data, evaluators, baselines,
                model_updates={"num_features": int(train_records[0]["features"].shape[-1])})
