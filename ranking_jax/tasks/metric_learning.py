"""Deep metric learning with an open-world class split (``image_classes`` builder): m-per-class training batches,
Recall@k, OPIS and epsilon-OPIS over the images of the held-out classes. TCM (Zhang et al., ICLR 2024) is a
term of the objective: ``config.loss = "losses.multi_similarity_loss + losses.tcm_regularizer"``."""

from __future__ import annotations

import pathlib

import numpy as np

from ranking_jax import data as data_lib
from ranking_jax import registry
from ranking_jax.tasks import Context, Task
from ranking_jax.tasks.cache import prepared


@registry.register("tasks.metric_learning", resolves=("model.num_features",))
def metric_learning(config, objective, ctx: Context) -> Task:
    """``data.dataset`` (``data.manual_dir`` or its download); evaluation on all held-out images or a seeded
    sample of ``data.max_eval_images`` (both metrics are O(N^2) in memory)."""
    d = config.data
    source = pathlib.Path(d.manual_dir) if d.manual_dir else f"builtin:{d.dataset}"
    builder = prepared(config, data_lib.ImageClasses, name="image_classes", builder_config=d.dataset, source=source,
                       manual_dir=d.manual_dir or None)
    src = builder.as_data_source()
    max_value = float(builder.info.metadata["max_value"])
    train_data = data_lib.image_pipeline(src[d.train_split], batch_size=d.batch_size, train=True, seed=config.seed,
                                         max_value=max_value, classes_per_batch=d.classes_per_batch or None)
    eval_source = src[d.eval_split]
    if d.max_eval_images and d.max_eval_images < len(eval_source):
        keep = np.random.default_rng(config.seed).choice(len(eval_source), d.max_eval_images, replace=False)
        eval_source = [eval_source[int(i)] for i in np.sort(keep)]
    batches = data_lib.image_pipeline(eval_source, batch_size=d.eval_batch_size, train=False, max_value=max_value)
    evaluators = {"embedding": registry.lookup("evaluators.embedding")(
        batches, mesh=ctx.mesh, rules=ctx.rules, ks=tuple(config.evals.recall_at),
        out_path=ctx.workdir / "embeddings.npz")}
    num_features = int(np.prod(builder.info.features["image"].shape))
    return Task(train_data.iterator(), evaluators, model_updates={"num_features": num_features})
