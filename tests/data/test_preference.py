"""ranking_jax.data.preference: the JSONL preference tfds builder round-trips rows written by the test (scores,
ties, missing scores), names the line of malformed rows, and splits Anthropic HH dialogues into prompt and responses."""

import json

import numpy as np
import pytest
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


def test_preference_errors_name_the_line(tmp_path):
    root = tmp_path / "src"
    write_lines(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_score": 1,
                                                   "rejected_score": 0}),
                                       json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:2: expected chosen_score and rejected_score on "
                                                   r"every row or on none"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out", manual_dir=root)
    write_lines(root / "train.jsonl", [json.dumps({"prompt": "p", "chosen": "a"})])
    with pytest.raises(data.DataFormatError, match=r"train.jsonl:1: expected the key\(s\) \['rejected'\]"):
        data.prepare(data.Preference, config="jsonl", data_dir=tmp_path / "out2", manual_dir=root)


def test_hh_dialogue_split():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no"
    prompt, c, r = data.preference.split_hh_dialogue(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert (c, r) == (" like this", " no")
    assert data.preference.split_hh_dialogue(chosen, "\n\nHuman: other\n\nAssistant: x") is None
