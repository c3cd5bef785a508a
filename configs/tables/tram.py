"""TRAM (Sherborne et al., ICLR 2024) in ranking form: fine-tune all-MiniLM-L6-v2 on one collection with Adam(W),
SAM, ASAM and TRAM (targets θ_{t−1}, θ₀ and noised inputs), and evaluate in domain and zero-shot on the others.

    python scripts/reproduce.py --table tram                # 200 steps, 64-token documents, every test query
    python scripts/reproduce.py --table tram --scale full   # 2,000 steps, 256-token documents, 10 seeds

Every row is ``configs/bi_encoder.py`` (BERT_DOT: mean pooling, MiniLM's cosine) trained on the ChatterBot corpus
(PyPI) with the listwise softmax loss over 1 answer + 3 BM25 negatives; in domain, dense retrieval over all 871
ChatterBot answers for its 163 held-out questions; zero-shot, re-ranking BM25's candidates for all 300 SciFact and
225 Cranfield queries. Only ``optimizer.name`` (and TRAM's target) changes between rows. TRAM is calibrated by one
rule for every target: over its first 10 steps the KL's scale is set so that the median radius d_t is half ASAM's
ρ (``optimizer.tram.calibrate`` / ``target_d``), then fixed; TRAM-x's noise σ is 0.1 of the embedding table's RMS
entry (``sigma_relative``), so the noise is a tenth of a row's norm rather than larger than it.
"""

import pathlib
import types

SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
TARGETS = {"scifact": "SciFact", "cranfield": "Cranfield"}
ASAM_RHO = 0.5
CALIBRATED = {"optimizer.name": "tram", "optimizer.tram.calibrate": 10, "optimizer.tram.target_d": ASAM_RHO / 2}
OPTIMIZERS = {"adam": {"optimizer.name": "adamw"},
              "sam": {"optimizer.name": "sam"},
              "asam": {"optimizer.name": "asam", "optimizer.asam.rho": ASAM_RHO},
              "tram_prev": {**CALIBRATED, "optimizer.tram.target": "prev"},
              "tram_init": {**CALIBRATED, "optimizer.tram.target": "init"},
              "tram_x": {**CALIBRATED, "optimizer.tram.target": "noise", "optimizer.tram.sigma": 0.1,
                         "optimizer.tram.sigma_relative": True}}

PAPER = """
Sherborne, Saphra, Dasigi, Peng 2024 (arXiv 2310.03646 v2), Table 3: XLM-R base fine-tuned on English MultiNLI,
accuracy on English (the training language) and zero-shot averaged over 14 XNLI languages, mean of 20 seeds:

| method | En | ZS avg |
|---|---|---|
| Adam | 83.9 | 72.9 |
| SAM / ASAM | 84.8 / 85.0 | 73.7 / 74.0 |
| TRAM-θ_{t−1} | 86.2 | 75.0 |
| TRAM-θ₀ | 85.6 | 74.9 |
| TRAM-x | 86.2 | 75.2 |
| TRAM-Fisher | 84.3 | 74.4 |

The same ordering holds for GPT-2 on M2D2 (zero-shot perplexity, S2ORC: Adam 27.4, SAM/ASAM 26.8,
TRAM-θ_{t−1} 26.2) and ViT-B/16 transfer. Defaults (App. B): SAM ρ = 0.05, ASAM ρ = 0.5, Adam (0.9, 0.99).
"""


def get_table(scale: str = "small") -> types.SimpleNamespace:
    full = scale == "full"
    steps, lr, length, depth = (2000, 2e-5, 256, 100) if full else (200, 5e-5, 64, 10)
    seeds = list(range(10)) if full else [0, 1, 2]
    base = {"data.collection": "chatterbot", "data.candidates": "bm25", "data.query_length": 32,
            "data.doc_length": length, "data.list_size": 4, "data.batch_size": 8, "data.train_depth": 30,
            "data.eval_depth": depth, "data.eval_list_size": depth, "data.max_eval_queries": 0,
            "evals.retrieval": True, "evals.zero_shot": ",".join(str(SHARED / t) for t in TARGETS),
            "model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0,
            "optimizer.learning_rate": lr, "train.eval_before": False, "train.eval_every": 0,
            "train.log_every": 5, "train.checkpoint_every": steps}
    t = types.SimpleNamespace()
    t.title = "TRAM vs Adam, SAM and ASAM: in-domain retrieval and zero-shot re-ranking of a fine-tuned MiniLM"
    t.paper = PAPER
    # the {placeholders} of tables/tram.notes.md, the table's hand-written notes
    t.notes_values = dict(steps=steps, epochs=steps * 8 / 586, lr=lr, length=length, depth=depth, seeds=len(seeds),
                          target_d=ASAM_RHO / 2)
    t.seeds = seeds
    t.rows = {"pretrained": {"config": "configs/bi_encoder.py", "seeds": seeds[:1],
                             "overrides": {**base, "train.num_steps": 0, "train.checkpoint_every": 0,
                                           "optimizer.schedule": "constant", "optimizer.warmup_steps": 0}}}
    for row, optimizer in OPTIMIZERS.items():
        t.rows[row] = {"config": f"configs/bi_encoder.py:steps={steps}", "overrides": {**base, **optimizer}}
    t.rows["bm25"] = {"baseline_of": "adam", "baseline": "first_stage"}  # BM25's own order of each collection's
    t.baselines = ["pretrained"]  # candidates (in domain: of its top {depth}, beside dense retrieval)
    t.groups = {"Adam": ["adam"], "SAM / ASAM": ["sam", "asam"], "TRAM": ["tram_prev", "tram_init", "tram_x"]}
    t.columns = [("ChatterBot nDCG@10 (in domain, retrieval)", "retrieval/nDCG@10", True)]
    t.columns += [(f"{label} nDCG@10 (zero-shot)", f"{name}/rerank/nDCG@10", True) for name, label in TARGETS.items()]
    t.paired = "query:retrieval.run"
    t.diagnostics = [("TRAM's d_t", "tram_d"), ("TRAM's scale", "tram_scale"), ("loss", "loss"),
                     ("gradient norm", "grad_norm")]
    t.claims = [{"text": "fine-tuning with AdamW forgets: the pretrained model beats it zero-shot on " + label,
                 "better": "pretrained", "worse": "adam", "column": f"{label} nDCG@10 (zero-shot)",
                 "paired": f"query:{name}_rerank.run"} for name, label in TARGETS.items()]
    pairs = [("tram_prev", "asam"), ("tram_init", "asam"), ("tram_x", "asam"), ("tram_prev", "adam"),
             ("asam", "adam"), ("sam", "adam")]
    for name, label in TARGETS.items():
        for better, worse in pairs:
            t.claims.append({"text": f"{better} beats {worse} zero-shot on {label}", "better": better, "worse": worse,
                             "column": f"{label} nDCG@10 (zero-shot)", "paired": f"query:{name}_rerank.run"})
    for better in ("tram_prev", "asam"):
        t.claims.append({"text": f"{better} beats adam in domain", "better": better, "worse": "adam",
                         "column": "ChatterBot nDCG@10 (in domain, retrieval)"})
    return t
