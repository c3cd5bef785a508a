"""``python -m ranking_jax.encode``: sentence embeddings of a text file, in input order with empty lines kept,
against sentence-transformers' all-MiniLM-L6-v2 embeddings (fixture)."""

import json
import re

import numpy as np
import pytest

from _models import minilm_reference
from ranking_jax import encode as encode_mod
from ranking_jax.assets import minilm_path


@pytest.fixture(scope="module")
def minilm_dir():
    return minilm_path()


@pytest.fixture(scope="module")
def reference(shared_dir):
    return minilm_reference(shared_dir)


def test_encode_cli_keeps_order_and_empty_lines(minilm_dir, reference, tmp_path, capsys):
    path = minilm_dir
    sentences, ref = reference
    assert all("\n" not in s for s in sentences)
    order = [8, 6, 0, 5, 6, 7, 2]  # duplicates, the empty line and the over-length text, shuffled
    (tmp_path / "in.txt").write_text("\n".join(sentences[i] for i in order) + "\n", encoding="utf-8")
    assert encode_mod.read_lines(tmp_path / "in.txt") == [sentences[i] for i in order]
    rc = encode_mod.main(["--model", str(path), "--input", str(tmp_path / "in.txt"), "--output",
                          str(tmp_path / "out.npy"), "--normalize", "--batch-size", "3"])
    assert rc == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (len(order), 384)
    np.testing.assert_allclose(out, ref[order], atol=1e-5)
    from ranking_jax.data.encoding import bucket
    assert [bucket(n, largest=256) for n in (1, 16, 17, 100, 200, 256)] == [16, 16, 32, 128, 256, 256]


def test_defaults_follow_the_model_directorys_modules(minilm_dir, reference, tmp_path):
    """No flags: DIR's modules (Normalize, mean pooling, max_seq_length 256) as sentence-transformers encodes;
    ``--no-normalize`` gives the raw mean-pooled vectors (same direction, other norms)."""
    sentences, ref = reference
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    common = ["--model", str(minilm_dir), "--input", str(tmp_path / "in.txt")]
    assert encode_mod.main(common + ["--output", str(tmp_path / "a.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), ref, atol=1e-5)
    assert encode_mod.main(common + ["--output", str(tmp_path / "b.npy"), "--no-normalize"]) == 0
    raw = np.load(tmp_path / "b.npy")
    norms = np.linalg.norm(raw, axis=1)
    assert norms.min() > 1.5  # MiniLM's mean-pooled vectors are far from unit length
    np.testing.assert_allclose(raw / norms[:, None], ref, atol=1e-5)


def _model_dir(minilm_dir, tmp_path, modules, pooling=None, extra=None):
    d = tmp_path / "m"
    d.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        (d / f).symlink_to(minilm_dir / f)
    (d / "modules.json").write_text(json.dumps(modules))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16, "do_lower_case": True}))
    if pooling:
        (d / "1_Pooling").mkdir()
        (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if extra:
        (d / "config_sentence_transformers.json").write_text(json.dumps(extra))
    return d


MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]


def test_modules_max_length_lowercase_pooling_and_prompts(minilm_dir, tmp_path):
    """A directory whose modules say CLS pooling, 16 tokens, lower-casing and a query prompt encodes exactly as the
    encoder's own hidden states say (hand-built with the tokenizer: prompt prepended, lower-cased, truncated)."""
    import jax.numpy as jnp

    from ranking_jax.models import pretrained as hf
    d = _model_dir(minilm_dir, tmp_path, MODULES, {"pooling_mode_cls_token": True},
                   {"prompts": {"query": "Query: "}, "default_prompt_name": None})
    enc = encode_mod.TextEncoder(d, batch_size=2)
    assert (enc.settings.pooling, enc.settings.max_length, enc.settings.lowercase) == ("cls", 16, True)
    texts = ["Ranking With MPNet", "a much longer text " * 10]
    got = enc.encode(texts, prompt_name="query")
    tok = hf.load_tokenizer(minilm_dir, max_length=16)
    rows = [e.ids for e in tok.encode_batch(["query: ranking with mpnet", ("query: " + texts[1]).lower()])]
    assert [len(r) for r in rows] == [8, 16]
    ids = np.zeros((2, 16), np.int32)
    mask = np.zeros((2, 16), np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    want = np.asarray(hf.from_pretrained(minilm_dir)(jnp.asarray(ids), jnp.asarray(mask)))[:, 0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(enc.encode(texts[0], prompt="query: "), want[0], atol=1e-5)  # one string -> [D]
    with pytest.raises(ValueError, match=r"prompt_name 'passage' is not among the model's prompts \['query'\]"):
        enc.encode(texts, prompt_name="passage")


def test_unsupported_modules_and_bad_inputs_are_refused(minilm_dir, tmp_path, capsys):
    from ranking_jax.models import pretrained as hf
    d = _model_dir(minilm_dir, tmp_path, MODULES + [{"idx": 2, "name": "2", "path": "2_Dense",
                                                     "type": "sentence_transformers.models.Dense"}],
                   {"pooling_mode_mean_tokens": True})
    with pytest.raises(ValueError, match=r"modules.json: module 'sentence_transformers.models.Dense' is not supported"):
        hf.sentence_settings(d)
    (d / "modules.json").write_text(json.dumps(MODULES))
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_lasttoken": true}')
    with pytest.raises(ValueError, match=r"1_Pooling/config.json: pooling \['pooling_mode_lasttoken'\]"):
        hf.sentence_settings(d)
    empty, latin1 = tmp_path / "empty.txt", tmp_path / "latin1.txt"
    empty.write_text("")
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    for args, message in [([str(empty), "--batch-size", "2"], "has no lines"),
                          ([str(latin1)], r"latin1.txt: not UTF-8 at byte 3"),
                          ([str(latin1), "--batch-size", "0"], "--batch-size must be at least 1"),
                          ([str(latin1), "--output", str(tmp_path / "missing" / "o.npy")],
                           r"missing/o.npy: the folder .*missing does not exist")]:
        with pytest.raises(SystemExit):
            encode_mod.main(["--model", str(minilm_dir), "--output", str(tmp_path / "o.npy"), "--input"] + args)
        assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o.npy").exists()
