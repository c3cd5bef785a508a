"""Margin-MSE (Hofstätter et al. 2020): cross-architecture distillation into BERT_DOT and ColBERT students, each
trained with RankNet (no distillation), pointwise MSE, teacher-weighted RankNet and Margin-MSE on the same
teacher-scored SciFact triples; re-ranking BM25's candidates of all 300 held-out queries.

    python scripts/reproduce.py --table margin_mse                # small: 2-layer students, 3 seeds, CPU
    python scripts/reproduce.py --table margin_mse --scale full   # 6-layer students, TK and PreTT too

Teachers need no training and are checked before anything is read into the students: T1 is zero-shot
all-MiniLM-L6-v2 and T2 the paper's mean ensemble of T1, all-mpnet-base-v2 and BM25 (a hybrid: BM25 is a strong
first stage on SciFact), each z-scored over its training scores (``data.teacher_norm``), each (query, document)
scored once and cached. Their re-ranking of the same
candidates is a baseline row (``teacher``), beside BM25's own order, a random and the best possible re-order and
the untrained students; the premise claims (T2 beats T1, both beat BM25) are tested like the students'.
"""

import pathlib
import types

SCIFACT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"
T1, T2 = "minilm", "minilm,mpnet,first_stage"
LOSSES = {  # row suffix: (loss, teachers); each loss's view says what it reads (labels or teacher scores)
    "ranknet": ("losses.pairwise_logistic_loss", T2),  # T2's triples, binary labels: no distillation
    "mse": ("losses.mse_distill_loss", T2),
    "wranknet": ("losses.weighted_ranknet_distill_loss", T2),
    "margin_mse_t1": ("losses.margin_mse_loss", T1),
    "margin_mse_t2": ("losses.margin_mse_loss", T2),
}

PAPER = """
Hofstätter, Althammer, Schröder, Sertkan, Hanbury 2020 (arXiv 2010.02666), MS MARCO passage, re-ranking BM25's
top 1,000, students trained with Margin-MSE from T2 (mean ensemble of BERT-Base, BERT-Large and ALBERT-Large
cross-encoders), from the authors' model cards:

| student (T2, Margin-MSE) | DEV MRR@10 | DEV nDCG@10 | TREC-DL'19 nDCG@10 |
|---|---|---|---|
| BM25 | .194 | .241 | .501 |
| BERT_DOT | .332 | .391 | .712 |
| ColBERT | .375 | .436 | .744 |
| DistilBERT_CAT | .391 | .451 | .747 |

Stated: Margin-MSE significantly improves the re-ranking effectiveness of every student (TK, ColBERT, PreTT,
BERT_DOT, DistilBERT_CAT) over training without distillation and over the pointwise-MSE and weighted-RankNet
distillation losses, and the T2 ensemble teacher generally beats the single teacher T1. The paper's per-student,
per-loss table was not available here (../shared/reference/core_papers.md §1), so only these claims are tested;
its numbers are on another collection and are not drawn beside ours.
"""


def _students(full: bool, layers: int) -> dict:
    students = {"bert_dot": ("bi_encoder", {"model.num_hidden_layers": layers, "model.similarity": "cosine",
                                            "model.scale": 20.0}),
                "colbert": ("colbert", {"model.num_hidden_layers": layers})}
    if full:  # at small scale neither beat the random re-order in the first design (tables/margin_mse.notes.md)
        students["tk"] = ("tk", {"model.num_layers": 2})
        students["prett"] = ("prett", {"model.num_hidden_layers": layers, "model.split_layer": layers // 2})
    return students


def get_table(scale: str = "small") -> types.SimpleNamespace:
    full = scale == "full"
    steps, layers, depth, per_query, batch, lr, seeds = \
        (4000, 6, 100, 8, 32, 7e-6, [0, 1, 2]) if full else (100, 2, 20, 2, 16, 2e-4, [0, 1, 2])
    data = {"data.collection": str(SCIFACT), "data.candidates": "bm25", "data.query_length": 32,
            "data.doc_length": 128, "data.teacher_length": 256, "data.teacher_norm": "zscore",
            "data.train_depth": 100, "data.eval_depth": depth, "data.eval_list_size": depth,
            "data.max_eval_queries": 0, "data.teacher_per_query": per_query, "data.list_size": 2,
            "data.batch_size": batch, "evals.retrieval": False,  # re-ranking only, as every student
            "train.eval_before": False, "train.eval_every": 0, "train.log_every": 10,
            "train.checkpoint_every": steps, "optimizer.learning_rate": lr}
    t = types.SimpleNamespace()
    t.title = "Margin-MSE vs RankNet, pointwise MSE and weighted RankNet for BERT_DOT and ColBERT students (SciFact)"
    t.paper = PAPER
    # the {placeholders} of tables/margin_mse.notes.md, the table's hand-written notes
    t.notes_values = dict(layers=layers, per_query=per_query, steps=steps, batch=batch, lr=lr, depth=depth,
                          seeds=seeds, passes=f"{steps * batch / (809 * per_query):.1f}")
    t.seeds = seeds
    t.rows, t.groups = {}, {}
    for student, (family, model) in _students(full, layers).items():
        t.groups[student] = []
        for suffix, (loss, teachers) in {"untrained": LOSSES["margin_mse_t2"], **LOSSES}.items():
            row = f"{student}_{suffix}"
            t.rows[row] = {"config": f"configs/{family}.py:steps={0 if suffix == 'untrained' else steps}",
                           "overrides": {**data, **model, "loss": loss, "data.teacher": teachers}}
            if suffix == "untrained":
                t.rows[row]["overrides"]["optimizer.schedule"] = "constant"  # no steps to warm up or decay over
                if family == "bi_encoder":
                    t.rows[row]["seeds"] = seeds[:1]  # pretrained weights, no new parameters: the same at any seed
            if suffix != "untrained":  # the untrained students are reference lines, with the other baselines
                t.groups[student].append(row)
    first = "bert_dot_margin_mse_t2"
    for row, source, name in (("bm25", first, "first_stage"), ("random", first, "random"),
                              ("oracle", first, "oracle"), ("teacher_t1", "bert_dot_margin_mse_t1", "teacher"),
                              ("teacher_t2", first, "teacher")):
        t.rows[row] = {"baseline_of": source, "baseline": name}
    t.baselines = [f"{s}_untrained" for s in _students(full, layers)]
    t.columns = [("nDCG@10", "rerank/nDCG@10", True), ("MRR@10", "rerank/RR@10", True)]
    t.paired = "query:rerank.run"
    t.claims = [{"text": "the teachers' premise: T2 beats T1", "better": "teacher_t2", "worse": "teacher_t1",
                 "column": "nDCG@10"},
                {"text": "the teachers' premise: T1 beats BM25", "better": "teacher_t1", "worse": "bm25",
                 "column": "nDCG@10"},
                {"text": "the teachers' premise: T2 beats BM25", "better": "teacher_t2", "worse": "bm25",
                 "column": "nDCG@10"}]
    what = {"ranknet": "training without distillation (RankNet)", "mse": "pointwise MSE distillation",
            "wranknet": "weighted-RankNet distillation", "margin_mse_t1": "Margin-MSE from the single teacher T1",
            "untrained": "the untrained student"}
    for student in _students(full, layers):
        for worse in ("ranknet", "mse", "wranknet", "margin_mse_t1", "untrained"):
            t.claims.append({"text": f"{student}: Margin-MSE (T2) beats {what[worse]}",
                             "better": f"{student}_margin_mse_t2", "worse": f"{student}_{worse}",
                             "column": "nDCG@10"})
    return t
