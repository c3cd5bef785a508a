"""Views: how a loss reads a model's outputs and the batch. Every registered loss names its view.

A model gives some of these outputs (``Model.OUTPUTS``; the model registry lists them)::

    scores         [B, L]     each query's candidate list (every ranking family; preference pairs as L = 2)
    score_matrix   [B, B*L]   every query of the global batch against every document of the global batch
                              (column b' * L + l is document l of query b'); bi-encoder, ColBERT
    pseudo_scores  [B, L]     E2Rank: the query's pseudo-query (query + its first-stage top documents) against
                              its candidates; bi-encoder, with ``pseudo_*`` tokens in the batch
    embeddings     [B, D]     metric learning

Under ``jit`` the batch is the global batch (every device and process), so the score matrix holds the in-batch
negatives of all of them. Batch fields are those of :mod:`ranking_jax.data.pipeline`; ``reference_scores`` come
from the batch when the task computed them, else from the frozen initial model in the train step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax.numpy as jnp

# What a task must do to give a batch field a view reads (used in error messages).
BATCH_HINTS = {
    "labels": "ranking tasks give graded labels",
    "teacher_scores": "set config.data.teacher to the export_dir(s) of teacher runs (text_ranking distillation)",
    "reference_scores": "computed by the train step from the initial model",
    "class_labels": "the metric_learning task gives them",
    "tie": "the preference task gives them",
    "chosen_score": "preference data with reward-model scores: set config.data.reward_model, or give "
                    "chosen_score/rejected_score in the JSONL",
    "rejected_score": "see chosen_score",
    "propensities": "set config.data.propensities='popularity' (text_ranking)",
    "first_stage_scores": "text_ranking gives the first stage's scores of each candidate",
    "epoch": "text_ranking gives each list's epoch",
    "pseudo_ids": "text_ranking builds pseudo-queries when a loss reads the e2rank view (config.data.pseudo_docs)",
}


@dataclasses.dataclass(frozen=True)
class View:
    """``call(loss, outputs, batch, **extra) -> loss value``; ``outputs`` and ``batch`` name what it reads."""
    name: str
    outputs: tuple[str, ...]
    batch: tuple[str, ...]
    call: Callable[..., Any]
    doc: str

    @property
    def reference(self) -> bool:
        return "reference_scores" in self.batch


def _untied(batch) -> Any:
    real = batch["mask"][:, 0]
    return real & ~batch["tie"] if "tie" in batch else real


def in_batch_labels(labels, mask):
    """``(labels [B, B*L], where [B, B*L])`` of the score matrix: row b's own list keeps its labels, every other
    query's documents are negatives (label 0); padded documents are masked in every row."""
    b, size = labels.shape
    own = jnp.eye(b, dtype=labels.dtype)[:, :, None] * labels[None]
    return own.reshape(b, b * size), jnp.broadcast_to(mask.reshape(1, b * size), (b, b * size))


def _pair_labels(batch):
    """``P(i ≻ j)`` ``[B, L, L]``: the batch's ``pair_labels`` (soft), else 1 / 0.5 / 0 from graded labels."""
    if "pair_labels" in batch:
        return batch["pair_labels"]
    y = batch["labels"]
    return 0.5 * (1.0 + jnp.sign(y[..., :, None] - y[..., None, :]))


def _matrix(loss, o, b, **kw):
    labels, where = in_batch_labels(b["labels"], b["mask"])
    return loss(o["score_matrix"], labels=labels, where=where, **kw)


def _e2rank(loss, o, b, **kw):
    labels, where = in_batch_labels(b["labels"], b["mask"])
    return loss(o["score_matrix"], o["pseudo_scores"], b["labels"], labels=labels, where=where,
                rerank_where=b["mask"], **kw)


def _triples(loss, o, b, **kw):
    s, t, m = o["scores"], b["teacher_scores"], b["mask"]
    if s.shape[-1] != 2:
        raise ValueError(f"the triples view reads (positive, negative) lists of 2, got lists of {s.shape[-1]}; set "
                         "config.data.list_size=2")
    return loss(s[:, 0], s[:, 1], t[:, 0], t[:, 1], where=m[:, 0] & m[:, 1], **kw)


def _pairs(loss, o, b, **kw):
    s, r = o["scores"], b["reference_scores"]
    return loss(s[:, 0], s[:, 1], r[:, 0], r[:, 1], where=_untied(b), **kw)


def _rewarded_pairs(loss, o, b, **kw):
    s, r = o["scores"], b["reference_scores"]
    return loss(s[:, 0], s[:, 1], r[:, 0], r[:, 1], b["chosen_score"], b["rejected_score"], where=_untied(b), **kw)


VIEWS: dict[str, View] = {v.name: v for v in [
    View("list", ("scores",), ("labels", "mask"),
         lambda loss, o, b, **kw: loss(o["scores"], b["labels"], where=b["mask"], **kw),
         "loss(scores [B, L], labels, where=mask): ranking losses over each query's list"),
    View("teacher", ("scores",), ("teacher_scores", "mask"),
         lambda loss, o, b, **kw: loss(o["scores"], b["teacher_scores"], where=b["mask"], **kw),
         "loss(scores [B, L], teacher_scores [B, L], where=mask): distillation over each query's candidates"),
    View("triples", ("scores",), ("teacher_scores", "mask"), _triples,
         "loss(s+, s-, t+, t-): (positive, negative) lists of 2 and their teacher scores"),
    View("matrix", ("score_matrix",), ("labels", "mask"), _matrix,
         "loss(score_matrix [B, B*L], labels=in-batch labels, where=...): in-batch negatives plus each query's own "
         "hard negatives; positives are the labelled documents of the query's own list"),
    View("e2rank", ("score_matrix", "pseudo_scores"), ("labels", "mask", "pseudo_ids"), _e2rank,
         "loss(score_matrix, pseudo_scores [B, L], labels [B, L], ...): E2Rank's embedding + listwise parts"),
    View("embeddings", ("embeddings",), ("class_labels", "mask"),
         lambda loss, o, b, **kw: loss(o["embeddings"], b["class_labels"], where=b["mask"], **kw),
         "loss(embeddings [B, D], class_labels [B], where=mask): metric learning"),
    View("pairs", ("scores",), ("mask", "reference_scores"), _pairs,
         "loss(s_chosen, s_rejected, ref_chosen, ref_rejected, where=untied pairs): DPO family; scores [B, 2] are "
         "the policy's log-likelihoods"),
    View("rewarded_pairs", ("scores",), ("mask", "reference_scores", "chosen_score", "rejected_score"),
         _rewarded_pairs, "the pairs view plus the reward model's scores of both responses (MADPO)"),
    View("pair_nll", ("scores",), ("mask",),
         lambda loss, o, b, **kw: loss(-o["scores"][:, 0], -o["scores"][:, 1], where=_untied(b), **kw),
         "loss(-s_chosen, -s_rejected, where=untied pairs): reference-free losses of per-response NLLs (MaPO)"),
    View("reward_pairs", ("scores",), ("mask", "tie"),
         lambda loss, o, b, **kw: loss(o["scores"][:, 0], o["scores"][:, 1], ties=b["tie"], where=b["mask"][:, 0],
                                       **kw),
         "loss(r_chosen, r_rejected, ties=tie, where=real pairs): reward models with ties (Bradley-Terry)"),
    View("soft_pairs", ("scores",), ("labels", "mask"),
         lambda loss, o, b, **kw: loss(o["scores"], _pair_labels(b), where=b["mask"], **kw),
         "loss(scores [B, L], pair_labels [B, L, L], where=mask): soft pairwise labels (the batch's pair_labels, "
         "else 1 / 0.5 / 0 from graded labels)"),
    View("groups", ("scores",), ("labels", "mask", "reference_scores"),
         lambda loss, o, b, **kw: loss(o["scores"], b["reference_scores"], b["labels"], where=b["mask"], **kw),
         "loss(scores [B, L], reference_scores [B, L], labels, where=mask): listwise preference groups (IRPO)"),
    View("propensity_list", ("scores",), ("labels", "mask", "propensities"),
         lambda loss, o, b, **kw: loss(o["scores"], b["labels"], propensities=b["propensities"], where=b["mask"],
                                       **kw),
         "loss(scores, clicks, propensities=..., where=mask): unbiased learning from implicit feedback (Rel-MF)"),
    View("curriculum", ("scores",), ("labels", "mask", "first_stage_scores", "epoch"),
         lambda loss, o, b, **kw: loss(o["scores"], b["labels"], first_stage_scores=b["first_stage_scores"],
                                       epoch=b["epoch"], where=b["mask"], **kw),
         "loss(scores, labels, first_stage_scores=..., epoch=..., where=mask): curriculum-weighted ranking"),
]}


def view_of(name: str, loss_name: str) -> View:
    if name not in VIEWS:
        raise ValueError(f"{loss_name} is registered with view {name!r}, which is not one of {sorted(VIEWS)}")
    return VIEWS[name]


def missing_outputs(view: View, available: Mapping[str, Any] | tuple[str, ...]) -> list[str]:
    return [k for k in view.outputs if k not in available]
