"""ranking_jax.data.preference: the JSONL preference tfds builder round-trips rows written by the test (scores,
ties, missing scores), and Anthropic HH dialogues split into prompt and responses. Malformed rows (named by line):
tests/faults/test_bad_input_files.py."""

import json

import numpy as np
import tensorflow_datasets as tfds

from helpers import write_lines
from ranking_jax import data

tfds.disable_progress_bar()


def test_preference_round_trip(tmp_path):
    root = tmp_path / "src"
    write_lines(root / "train.jsonl", [
        json.dumps({"prompt": "p1", "chosen": "good", "rejected": "bad", "chosen_score": 8, "rejected_score": 2.5}),
        json.dumps({"prompt": "p2", "chosen": "a", "rejected": "b", "chosen_score": 1, "rejected_score": 1,
                         "tie": True})])
    write_lines(root / "test.jsonl", [json.dumps({"prompt": "p3", "chosen": "c", "rejected": "d"})])
    builder = data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out", manual_dir=root)
    src = builder.as_data_source()
    assert len(src["train"]) == 2 and len(src["test"]) == 1
    r = src["train"][1]
    assert r["prompt"] == b"p2" and r["tie"] and r["chosen_score"] == 1.0
    assert src["train"][0]["rejected_score"] == 2.5 and not src["train"][0]["tie"]
    assert np.isnan(src["test"][0]["chosen_score"])
    assert builder.info.metadata["has_scores"] == {"train": True, "test": False}


def test_hh_dialogue_split():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no"
    prompt, c, r = data.preference.split_hh_dialogue(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert (c, r) == (" like this", " no")
    assert data.preference.split_hh_dialogue(chosen, "\n\nHuman: other\n\nAssistant: x") is None
