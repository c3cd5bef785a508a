"""``python -m ranking_jax.encode``: sentence embeddings of a text file, in input order with empty lines kept,
against sentence-transformers' all-MiniLM-L6-v2 embeddings (fixture). The inputs and model directories it refuses:
tests/faults/test_bad_input_files.py."""

import numpy as np
import pytest

from _models import SENTENCE_MODULES, minilm_reference, sentence_model_dir
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


def test_modules_max_length_lowercase_pooling_and_prompts(minilm_dir, tmp_path):
    """A directory whose modules say CLS pooling, 16 tokens, lower-casing and a query prompt encodes exactly as the
    encoder's own hidden states say (hand-built with the tokenizer: prompt prepended, lower-cased, truncated)."""
    import jax.numpy as jnp

    from ranking_jax.models import pretrained as hf
    d = sentence_model_dir(minilm_dir, tmp_path, SENTENCE_MODULES, {"pooling_mode_cls_token": True},
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
