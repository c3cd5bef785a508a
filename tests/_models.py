"""Model helpers shared by the model, scoring, evaluator and runtime tests.

An independent NumPy BERT written on Hugging Face-layout tensors (the oracle of every encoder-based family), tiny
random configs and inputs, the tiny cross-encoder, a text batch of every family's fields, the naive MaxSim loop, the
family contract check, the sentence-transformers reference embeddings of all-MiniLM-L6-v2 and a model directory of
its weights with sentence-transformers modules of a test's choice. No pytest here: a ``test_runtime`` worker process
imports this module."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.special import erf

from ranking_jax import registry
from ranking_jax.models import pretrained as hf
from ranking_jax.models.cross_encoder import CrossEncoder
from ranking_jax.models.encoder import BertConfig, Encoder


TINY = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1)


# ---------------------------------------------------------------- independent NumPy reference (HF layout)

def random_hf_tensors(config: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors with Hugging Face BertModel names and torch [out, in] Linear layout."""
    rng = np.random.default_rng(seed)
    d, f = config.hidden_size, config.intermediate_size
    t = {"embeddings.word_embeddings.weight": rng.normal(0, 0.5, (config.vocab_size, d)),
         "embeddings.position_embeddings.weight": rng.normal(0, 0.5, (config.max_position_embeddings, d)),
         "embeddings.token_type_embeddings.weight": rng.normal(0, 0.5, (config.type_vocab_size, d)),
         "embeddings.LayerNorm.weight": rng.normal(1, 0.1, d), "embeddings.LayerNorm.bias": rng.normal(0, 0.1, d)}
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[f"{p}attention.self.{n}.weight"] = rng.normal(0, 0.2, (d, d))
            t[f"{p}attention.self.{n}.bias"] = rng.normal(0, 0.1, d)
        t[f"{p}attention.output.dense.weight"] = rng.normal(0, 0.2, (d, d))
        t[f"{p}attention.output.dense.bias"] = rng.normal(0, 0.1, d)
        t[f"{p}intermediate.dense.weight"] = rng.normal(0, 0.2, (f, d))
        t[f"{p}intermediate.dense.bias"] = rng.normal(0, 0.1, f)
        t[f"{p}output.dense.weight"] = rng.normal(0, 0.2, (d, f))
        t[f"{p}output.dense.bias"] = rng.normal(0, 0.1, d)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[f"{p}{n}.weight"] = rng.normal(1, 0.1, d)
            t[f"{p}{n}.bias"] = rng.normal(0, 0.1, d)
    return {k: np.asarray(v, np.float32) for k, v in t.items()}


def np_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_linear(x, t, name):
    return x @ t[name + ".weight"].T + t[name + ".bias"]


def np_layer(x, mask, t, p, *, heads, eps, act="gelu"):
    """One HF BertLayer in float64: x [N, T, D], mask [N, T] (1 real, 0 pad)."""
    n, length, d = x.shape
    k = d // heads
    split = lambda y: y.reshape(n, length, heads, k).transpose(0, 2, 1, 3)  # noqa: E731
    q = split(np_linear(x, t, p + "attention.self.query"))
    kk = split(np_linear(x, t, p + "attention.self.key"))
    v = split(np_linear(x, t, p + "attention.self.value"))
    s = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(k) + (1.0 - mask[:, None, None, :]) * -1e9
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
    x = np_layer_norm(x + np_linear(ctx, t, p + "attention.output.dense"),
                      t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"], eps)
    h = np_linear(x, t, p + "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0))) if act == "gelu" else np.maximum(h, 0.0)
    return np_layer_norm(x + np_linear(h, t, p + "output.dense"), t[p + "output.LayerNorm.weight"],
                         t[p + "output.LayerNorm.bias"], eps)


def np_embed(ids, type_ids, t, eps, position_offset=0):
    length = ids.shape[-1]
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][position_offset:position_offset + length]
         + t["embeddings.token_type_embeddings.weight"][type_ids])
    return np_layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)


def numpy_bert(ids, mask, type_ids, t, config: BertConfig, layers=None):
    """HF BertModel last hidden state in float64 (layers: which encoder layers to run, default all)."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    x = np_embed(ids, type_ids, t, config.layer_norm_eps)
    for i in range(config.num_hidden_layers) if layers is None else layers:
        x = np_layer(x, mask.astype(np.float64), t, f"encoder.layer.{i}.", heads=config.num_attention_heads,
                     eps=config.layer_norm_eps)
    return x


# ---------------------------------------------------------------- tiny inputs and models

def tiny_inputs(n=3, length=11, seed=1, vocab=97):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, length)).astype(np.int32)
    lengths = rng.integers(2, length + 1, n)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = ids * mask
    type_ids = ((np.arange(length)[None] >= lengths[:, None] // 2) & (mask > 0)).astype(np.int32)
    return ids, mask, type_ids


def tiny_pair_batch(b=8, l=2, t=12, seed=0):
    rng = np.random.default_rng(seed)
    ids, mask, type_ids = tiny_inputs(b * l, t, seed=seed)
    return {"pair_ids": ids.reshape(b, l, t), "pair_mask": mask.reshape(b, l, t),
            "pair_type_ids": type_ids.reshape(b, l, t),
            "labels": rng.integers(0, 3, (b, l)).astype(np.float32), "mask": np.ones((b, l), bool)}


def tiny_cross_encoder(**kw):
    with nnx.use_eager_sharding(False):
        enc = Encoder(TINY, rngs=nnx.Rngs(0), **kw)
        model = CrossEncoder(enc, rngs=nnx.Rngs(1))
    hf.load_encoder_weights(enc, random_hf_tensors(TINY))
    return model


# ---------------------------------------------------------------- the model families on a text batch

B, L, TQ, TD = 2, 3, 7, 9
TENSORS = random_hf_tensors(TINY)
CFG = {f: getattr(TINY, f) for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size", "max_position_embeddings")}


def build(name, **kw):
    model = registry.lookup(f"models.{name}")(config=CFG, **kw)
    for enc in [getattr(model, a, None) for a in ("encoder", "query_encoder", "doc_encoder")]:
        if enc is not None:
            hf.load_encoder_weights(enc, TENSORS)
    return model


def text_batch(seed=0):
    q_ids, q_mask, _ = tiny_inputs(B, TQ, seed=seed)
    d_ids, d_mask, _ = tiny_inputs(B * L, TD, seed=seed + 1)
    d_mask[-1] = 0  # a padded candidate slot: no real tokens
    d_ids[-1] = 0
    mask = np.ones((B, L), bool)
    mask[-1, -1] = False
    return {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": d_ids.reshape(B, L, TD),
            "doc_mask": d_mask.reshape(B, L, TD), "labels": np.ones((B, L), np.float32), "mask": mask}


def np_hidden(ids, mask, type_ids=None):
    flat = ids.reshape(-1, ids.shape[-1])
    m = mask.reshape(flat.shape)
    t = np.zeros_like(flat) if type_ids is None else type_ids.reshape(flat.shape)
    return numpy_bert(flat, m, t, TENSORS, TINY).reshape(*ids.shape, -1)


def np_maxsim(q, d, qm, dm):
    out = np.zeros(d.shape[:2])
    for b in range(d.shape[0]):
        for l in range(d.shape[1]):
            if not dm[b, l].any():
                continue
            for i in range(q.shape[1]):
                if qm[b, i]:
                    out[b, l] += max(q[b, i] @ d[b, l, j] for j in range(d.shape[2]) if dm[b, l, j])
    return out


def pair_from_split(batch):
    """[CLS] q [SEP] (padded to Tq) + d[1:] -> the cross-encoder input PreTT(split_layer=0) must equal."""
    q_ids = np.broadcast_to(batch["query_ids"][:, None], (B, L, TQ))
    q_mask = np.broadcast_to(batch["query_mask"][:, None], (B, L, TQ))
    ids = np.concatenate([q_ids, batch["doc_ids"][..., 1:]], -1)
    mask = np.concatenate([q_mask, batch["doc_mask"][..., 1:]], -1)
    types = np.concatenate([np.zeros_like(q_ids), np.ones_like(batch["doc_ids"][..., 1:])], -1)
    return {"pair_ids": ids, "pair_mask": mask, "pair_type_ids": types}


def check_family_contract(name):
    """The family contract of model ``name``: [B, L] float32 scores; a padded candidate slot gives finite
    scores and NaN-free gradients; dropout applies with ``deterministic=False`` and rngs (TK has none)."""
    model = (registry.lookup("models.tk")(vocab_size=97, embed_dim=32, num_heads=4) if name == "tk" else build(name))
    batch = text_batch()
    batch.update(pair_from_split(batch))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p, key):
        s = nnx.merge(graphdef, p, rest)(batch, deterministic=False, rngs=nnx.Rngs(dropout=key))
        return jnp.sum(jnp.where(batch["mask"], jax.nn.log_softmax(jnp.where(batch["mask"], s, -1e9)), 0.0)), s

    (val, s), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, jax.random.key(0))
    assert s.shape == (B, L) and s.dtype == jnp.float32 and np.isfinite(np.asarray(s)).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    if name != "tk":  # TK has no dropout (ECAI20_TK)
        det = nnx.merge(graphdef, params, rest)(batch)
        assert not np.allclose(np.asarray(s), np.asarray(det), atol=1e-6)


# ---------------------------------------------------------------- all-MiniLM-L6-v2 reference

def minilm_reference(shared_dir):
    """The sentences and sentence-transformers embeddings of all-MiniLM-L6-v2 in ``shared/fixtures``."""
    ref = json.loads((shared_dir / "fixtures" / "minilm_l6_reference.json").read_text())
    emb = np.asarray(ref["embeddings"], np.float64)
    # The package's modules.json ends with Normalize, so the fixture rows are unit vectors (its "pipeline" note
    # says otherwise); we compare L2-normalized mean pooling, which is what sentence-transformers computed.
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    return ref["sentences"], emb


# A sentence-transformers modules.json of a Transformer and a Pooling module.
SENTENCE_MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]


def sentence_model_dir(minilm_dir, tmp_path, modules, pooling=None, extra=None):
    """``tmp_path/m``: all-MiniLM-L6-v2's weights, config and tokenizer (links) under the sentence-transformers files
    given here: ``modules`` (modules.json), ``pooling`` (1_Pooling/config.json), ``extra``
    (config_sentence_transformers.json), 16 tokens and lower-casing."""
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
