"""ranking_jax.models.pretrained with all-MiniLM-L6-v2: parity with sentence-transformers' output (fixture),
export/reload, partial loading. MiniLM is loaded once per module. A missing or unsupported model directory (errors
naming the path and the fix): tests/faults/test_bad_input_files.py."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from _models import minilm_reference
from ranking_jax.assets import minilm_path
from ranking_jax.models import cross_encoder, pretrained as hf, tk
from ranking_jax.models.encoder import mean_pool


@pytest.fixture(scope="module")
def minilm():
    path = minilm_path()
    return path, hf.from_pretrained(path), hf.load_checkpoint(path)[1]


@pytest.fixture(scope="module")
def reference(shared_dir):
    return minilm_reference(shared_dir)


def _embed(encoder, path, texts, max_length=256):
    tok = hf.load_tokenizer(path, max_length=max_length)
    encs = tok.encode_batch(texts)
    t = max(len(e.ids) for e in encs)
    ids, mask = np.zeros((len(texts), t), np.int32), np.zeros((len(texts), t), np.int32)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, 1
    v = np.asarray(mean_pool(encoder(jnp.asarray(ids), jnp.asarray(mask)), jnp.asarray(mask)), np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True), [len(e.ids) for e in encs]


def test_parity_with_sentence_transformers(minilm, reference):
    path, encoder, _ = minilm
    sentences, ref = reference
    ours, lengths = _embed(encoder, path, sentences)
    assert "" in sentences and max(lengths) == 256 and min(lengths) == 2  # empty and over-length inputs covered
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_export_reloads_identically_with_hf_layout(minilm, reference, tmp_path):
    path, encoder, tensors = minilm
    out = hf.save_pretrained(encoder, tmp_path / "export", source=path)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "modules.json",
              "1_Pooling/config.json"):
        assert (out / f).is_file(), f
    exported = load_file(str(out / "model.safetensors"))
    assert set(exported) == set(tensors)  # same Hugging Face key names, pooler passed through
    for k, v in tensors.items():
        np.testing.assert_array_equal(exported[k], v, err_msg=k)  # bit-exact round trip of unchanged weights
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    sentences, _ = reference
    a, _ = _embed(encoder, path, sentences[:4])
    b, _ = _embed(hf.from_pretrained(out), out, sentences[:4])
    np.testing.assert_array_equal(a, b)


def test_partial_loading_keeps_excluded_and_new_params_initialized(minilm):
    path, _, tensors = minilm
    model = cross_encoder(pretrained=path, exclude=[r"^encoder\.layer\.5\."], seed=3)
    fresh = cross_encoder(config=hf.load_config(path), seed=3)
    layer4, layer5 = model.encoder.layers[4], model.encoder.layers[5]
    np.testing.assert_array_equal(np.asarray(layer4.mlp_kernel[...]),
                                  tensors["encoder.layer.4.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(np.asarray(layer5.mlp_kernel[...]), np.asarray(fresh.encoder.layers[5].mlp_kernel[...]))
    np.testing.assert_array_equal(np.asarray(model.head.kernel[...]), np.asarray(fresh.head.kernel[...]))
    only_emb = hf.load_encoder_weights(fresh.encoder, tensors, include=[r"^embeddings\."])
    assert sorted(only_emb) == sorted(k for k in tensors if k.startswith("embeddings.") and "position_ids" not in k)
    with pytest.raises(ValueError, match="query, key and value together"):
        hf.load_encoder_weights(fresh.encoder, tensors, exclude=[r"attention\.self\.query"])


def test_full_load_skips_random_init_but_keeps_the_head_initialization(minilm, tmp_path):
    """A full load builds the encoder abstractly; the params stream still advances as if it had
    initialized it, so the head equals a randomly initialized model's head of the same seed."""
    path, _, tensors = minilm
    model = cross_encoder(pretrained=path, seed=3)
    fresh = cross_encoder(config=hf.load_config(path), seed=3)
    np.testing.assert_array_equal(np.asarray(model.head.kernel[...]), np.asarray(fresh.head.kernel[...]))
    np.testing.assert_array_equal(np.asarray(model.encoder.layers[5].mlp_out_kernel[...]),
                                  tensors["encoder.layer.5.output.dense.weight"].T)
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file({k: v for k, v in tensors.items() if k != "encoder.layer.2.output.dense.bias"},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError, match=r"encoder\.layer\.2\.output\.dense\.bias"):
        cross_encoder(pretrained=tmp_path)


def test_cross_encoder_export_round_trip(minilm, tmp_path):
    path, _, _ = minilm
    model = cross_encoder(pretrained=path, seed=1)
    model.head.bias[...] = jnp.asarray([0.25])
    model.save_pretrained(tmp_path / "ce", source=path)
    again = cross_encoder(pretrained=tmp_path / "ce", seed=2)
    rng = np.random.default_rng(0)
    batch = {"pair_ids": rng.integers(1000, 2000, (1, 2, 10)).astype(np.int32),
             "pair_mask": np.ones((1, 2, 10), np.int32), "pair_type_ids": np.zeros((1, 2, 10), np.int32)}
    np.testing.assert_array_equal(model(batch), again(batch))


def test_tk_embeddings_from_minilm(minilm):
    path, _, tensors = minilm
    model = tk(pretrained=path)
    np.testing.assert_array_equal(np.asarray(model.embeddings[...]), tensors["embeddings.word_embeddings.weight"])
