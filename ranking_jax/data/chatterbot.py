"""The quickstart's embedded collection: ChatterBot English corpus as a BEIR-format Q->A retrieval task.

``chatterbot-corpus`` 1.3.3 (PyPI, BSD) ships 2,026 human-written English conversations in 21
categories. Each conversation's first utterance is a query; the reply that follows it is relevant
(score 1). Identical utterances are merged into one query and identical replies into one document,
so a query asked in several conversations has every reply it received as a relevant document
(749 queries, 871 documents, 898 judged pairs; 20% of queries, 214 pairs, are test). Queries are split into train/test by a hash of
their id (stable across machines and Python versions).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pathlib
from typing import Callable

import numpy as np

PACKAGE = "chatterbot-corpus"
VERSION = "1.3.3"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"


def english_dir() -> pathlib.Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise ImportError(f"the quickstart collection needs {PACKAGE}: {INSTALL}  (or run `make quickstart`)") \
            from None
    return pathlib.Path(os.path.dirname(chatterbot_corpus.__file__)) / "data" / "english"


def _exchanges():
    """``(category, question, answer)`` of every conversation's first two turns (whitespace collapsed), in file
    order; the category is the YAML file's name."""
    import yaml

    files = sorted(glob.glob(str(english_dir() / "*.yml")))
    if not files:
        raise FileNotFoundError(f"no *.yml in {english_dir()}; reinstall with {INSTALL} --force-reinstall")
    for path in files:
        for i, conv in enumerate(yaml.safe_load(open(path, encoding="utf-8"))["conversations"]):
            if len(conv) < 2:
                raise ValueError(f"{path}: conversation {i} has {len(conv)} turn(s); expected at least 2")
            q, a = (" ".join(str(t).split()) for t in conv[:2])
            yield pathlib.Path(path).stem, q, a


def _split(qid: str, test_fraction: float) -> str:
    h = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def write_beir(out_dir: str | pathlib.Path, *, test_fraction: float = 0.2) -> pathlib.Path:
    """Writes corpus.jsonl, queries.jsonl and qrels/{train,test}.tsv; returns ``out_dir``.

    Idempotent: an existing complete conversion is reused.
    """
    out = pathlib.Path(out_dir)
    done = out / ".complete"
    if done.exists():
        return out
    queries: dict[str, str] = {}
    docs: dict[str, str] = {}
    qrels: set[tuple[str, str]] = set()
    for _, q, a in _exchanges():
        qid = queries.setdefault(q, f"q{len(queries)}")
        did = docs.setdefault(a, f"d{len(docs)}")
        qrels.add((qid, did))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for text, did in docs.items():
            f.write(json.dumps({"_id": did, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        for text, qid in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split in ("train", "test"):
        with open(out / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in sorted(qrels, key=lambda p: (int(p[0][1:]), int(p[1][1:]))):
                if _split(qid, test_fraction) == split:
                    f.write(f"{qid}\t{did}\t1\n")
    (out / "SOURCE.md").write_text(__doc__ + f"\nBuilt from {PACKAGE}=={VERSION}.\n")
    done.touch()
    return out


def write_preferences(out_dir: str | pathlib.Path, *, test_fraction: float = 0.2, seed: int = 0,
                      reward_fn: Callable[[list[str], list[str]], np.ndarray] | None = None) -> pathlib.Path:
    """Writes ``train.jsonl`` and ``test.jsonl`` of preference pairs (the ``preference`` builder's ``jsonl``
    format); returns ``out_dir``. Idempotent, like :func:`write_beir`.

    A synthetic-preference construction from real text: for every distinct (question, answer) exchange,
    ``prompt`` = the question, ``chosen`` = its real human-written answer, ``rejected`` = an answer given to
    a question of another category (drawn with ``seed``; never one of the prompt's own answers). So the
    label is "answers this question" vs "answers some other question", not a human judgment between two
    replies. Questions are split as in :func:`write_beir` (same hash, so the test prompts are the BEIR
    collection's test queries). ``reward_fn(prompts, responses) -> scores`` adds ``chosen_score`` and
    ``rejected_score`` (a frozen reward model's outputs, e.g. for MADPO).
    """
    out = pathlib.Path(out_dir)
    done = out / ".complete"
    if done.exists():
        return out
    exchanges, seen = [], set()
    qids: dict[str, str] = {}
    answers_of: dict[str, set[str]] = {}
    categories_of: dict[str, set[str]] = {}
    for category, q, a in _exchanges():
        qids.setdefault(q, f"q{len(qids)}")  # the ids of write_beir
        answers_of.setdefault(q, set()).add(a)
        categories_of.setdefault(q, set()).add(category)
        if (q, a) not in seen:
            seen.add((q, a))
            exchanges.append((category, q, a))
    rng = np.random.default_rng(seed)
    rows = []
    for _, q, a in exchanges:
        others = [e[2] for e in exchanges if e[0] not in categories_of[q] and e[2] not in answers_of[q]]
        rows.append({"prompt": q, "chosen": a, "rejected": others[rng.integers(len(others))],
                     "split": _split(qids[q], test_fraction)})
    if reward_fn is not None:
        prompts = [r["prompt"] for r in rows]
        chosen = np.asarray(reward_fn(prompts, [r["chosen"] for r in rows]), np.float64)
        rejected = np.asarray(reward_fn(prompts, [r["rejected"] for r in rows]), np.float64)
        for r, c, n in zip(rows, chosen, rejected):
            r["chosen_score"], r["rejected_score"] = float(c), float(n)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                if r["split"] == split:
                    f.write(json.dumps({k: v for k, v in r.items() if k != "split"}, ensure_ascii=False) + "\n")
    (out / "SOURCE.md").write_text(write_preferences.__doc__ + f"\nBuilt from {PACKAGE}=={VERSION}, seed {seed}.\n")
    done.touch()
    return out


def write_policy_preferences(out_dir: str | pathlib.Path, *, label_scale: float, num_negatives: int = 2,
                             test_fraction: float = 0.2, seed: int = 0) -> pathlib.Path:
    """Writes preference pairs of controlled label quality and the policy's candidate sets; returns ``out_dir``.

    Ground-truth rewards from the corpus' real labels: for a question ``x``, ``r*(x, y) = 2`` when ``y`` is one
    of its own answers, 1 for an answer to another question of its category, 0 for an answer from another
    category. Every question with a same-category answer gets ``2 + num_negatives`` candidates (one of each of
    the first two kinds and ``num_negatives`` of the last, drawn with ``seed``). Pairs are all candidate pairs
    with different rewards, labelled as in MADPO's data (Rho 2025): ``y_1`` is chosen when
    ``label_scale * r*(y_1) + G_1 >= label_scale * r*(y_2) + G_2`` with ``G ~ Gumbel(0, 1)``, i.e. Bradley-Terry
    with ``P(correct) = sigmoid(label_scale * |Δr*|)`` (large scale: clean labels; small: noisy). Test pairs
    carry the true order.

    Files: ``train.jsonl`` / ``test.jsonl`` (the ``preference`` builder's format) and ``candidates_test.jsonl``
    (``{prompt, responses, rewards}`` per test question, for :class:`ranking_jax.evaluate.PolicyEvaluator`).
    """
    out = pathlib.Path(out_dir)
    done = out / ".complete"
    if done.exists():
        return out
    answers: dict[str, list[str]] = {}
    category: dict[str, str] = {}
    for cat, q, a in _exchanges():
        category.setdefault(q, cat)
        if a not in answers.setdefault(q, []):
            answers[q].append(a)
    by_category: dict[str, list[str]] = {}
    for q, cat in category.items():
        by_category.setdefault(cat, []).append(q)
    qids = {q: f"q{i}" for i, q in enumerate(answers)}  # the ids of write_beir
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    candidates, skipped, flips = [], 0, 0
    for q in answers:
        own = set(answers[q])
        same = [a for o in by_category[category[q]] if o != q for a in answers[o] if a not in own]
        other = sorted({a for o, c in category.items() if c != category[q] for a in answers[o]} - own - set(same))
        if not same or len(other) < num_negatives:
            skipped += 1
            continue
        responses = [answers[q][0], same[rng.integers(len(same))]] + \
            [other[i] for i in rng.choice(len(other), num_negatives, replace=False)]
        rewards = [2.0, 1.0] + [0.0] * num_negatives
        order = rng.permutation(len(responses))  # no position tells the reward
        responses, rewards = [responses[i] for i in order], [rewards[i] for i in order]
        split = _split(qids[q], test_fraction)
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                if rewards[i] == rewards[j]:
                    continue
                if split == "test":
                    first = rewards[i] > rewards[j]
                else:
                    g = rng.gumbel(size=2)
                    first = label_scale * rewards[i] + g[0] >= label_scale * rewards[j] + g[1]
                    flips += first != (rewards[i] > rewards[j])
                c, r = (i, j) if first else (j, i)
                rows[split].append({"prompt": q, "chosen": responses[c], "rejected": responses[r]})
        if split == "test":
            candidates.append({"prompt": q, "responses": responses, "rewards": rewards})
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", rows["train"]), ("test", rows["test"]), ("candidates_test", candidates)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in lines)
    (out / "SOURCE.md").write_text(
        write_policy_preferences.__doc__ + f"\nBuilt from {PACKAGE}=={VERSION}: label_scale {label_scale}, seed "
        f"{seed}; {len(rows['train'])} training pairs ({flips} against the true order), {len(rows['test'])} test "
        f"pairs, {len(candidates)} test candidate sets; {skipped} questions without a same-category answer "
        "skipped.\n")
    done.touch()
    return out

