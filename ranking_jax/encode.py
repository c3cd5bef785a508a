"""Encode texts into vectors with a BERT or MPNet encoder, as sentence-transformers does, in JAX.

    python -m ranking_jax.encode --model DIR --input FILE.txt --output OUT.npy [--pooling mean|cls|max|mean_sqrt_len]
        [--normalize | --no-normalize] [--max-length N] [--prompt-name NAME | --prompt TEXT] [--batch-size N]
        [--dtype float32|bfloat16]

By default DIR's own sentence-transformers modules decide (``modules.json``: the Transformer's max_seq_length and
lower-casing, the Pooling mode, a Normalize module; prompts from ``config_sentence_transformers.json``), so the
vectors equal ``SentenceTransformer(DIR).encode(texts)``; flags override them. In Python::

    from ranking_jax import TextEncoder
    vectors = TextEncoder("DIR").encode(texts, batch_size=32, normalize_embeddings=False)

One text per input line, empty lines included, in order (row ``i`` of OUT.npy is line ``i``). Texts are
encoded on the one length-bucketing path of training and evaluation (:func:`ranking_jax.data.encoding.encode_rows`:
sorted by token length, each batch padded to a multiple of 8 tokens, each length compiled once per machine thanks
to the persistent compilation cache, over all local devices); the output restores the input order.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

import jax
import numpy as np

from ranking_jax import process, sharding
from ranking_jax.data.encoding import encode_queries, encode_rows
from ranking_jax.models import pretrained as hf
from ranking_jax.models.bi_encoder import BiEncoder
from ranking_jax.models._common import resolve_pretrained
from ranking_jax.models.encoder import POOLINGS, Encoder, check_pooling

__all__ = ["TextEncoder", "read_lines", "main"]


def token_arrays(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """``{"ids", "mask"}`` ``[N, max_length]`` of ``texts`` (``tokenizer`` truncates to ``max_length``)."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.zeros((len(encodings), max_length), np.int32)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encodings):
        if len(e.ids) > max_length:
            raise ValueError(f"a text has {len(e.ids)} tokens > max_length {max_length}; load the tokenizer with "
                             f"load_tokenizer(path, max_length={max_length})")
        ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, 1
    return {"ids": ids, "mask": mask}


class TextEncoder:
    """Texts -> vectors with a model directory (``"minilm"``, ``"mpnet"`` or a path; or an :class:`Encoder` plus
    the directory of its tokenizer), following the directory's sentence-transformers modules
    (:func:`ranking_jax.models.pretrained.sentence_settings`); ``pooling``/``normalize``/``max_length`` override.
    """

    def __init__(self, model: str | pathlib.Path | Encoder, *, tokenizer_dir: str | pathlib.Path | None = None,
                 pooling: str | None = None, normalize: bool | None = None, batch_size: int = 32,
                 max_length: int | None = None, dtype: str = "float32"):
        if isinstance(model, Encoder):
            if tokenizer_dir is None:
                raise ValueError("an Encoder instance needs tokenizer_dir= (the directory of its tokenizer.json)")
            encoder = model
        else:
            model = resolve_pretrained(model)
            tokenizer_dir = tokenizer_dir or model
            encoder = hf.from_pretrained(model, dtype=dtype)
        self.settings = hf.sentence_settings(tokenizer_dir)
        pooling = check_pooling(pooling or self.settings.pooling)
        normalize = self.settings.normalize if normalize is None else normalize
        max_length = max_length or self.settings.max_length
        room = encoder.config.max_position_embeddings - encoder.config.position_start
        if max_length > room:
            raise ValueError(f"max_length {max_length} exceeds the {room} positions the model has")
        _check_batch_size(batch_size)
        self.tokenizer = hf.load_tokenizer(tokenizer_dir, max_length=max_length)
        self.batch_size, self.max_length = batch_size, max_length
        self.pad_multiple = 8  # 15-30% fewer padded tokens than powers of two on short texts (BENCHMARKS.md)
        self.towers = BiEncoder(encoder, pooling=pooling, similarity="cosine" if normalize else "dot")
        self.mesh = sharding.make_mesh([("data", -1)], devices=jax.local_devices())

    def encode(self, texts: str | Sequence[str], *, batch_size: int | None = None,
               normalize_embeddings: bool = False, prompt_name: str | None = None, prompt: str | None = None,
               progress: bool = False) -> np.ndarray:
        """float32 ``[N, D]`` in the order of ``texts`` (``[D]`` for one string), as
        ``SentenceTransformer.encode``: ``prompt`` (or the directory's prompt ``prompt_name``, else its default
        prompt) is prepended to every text; ``normalize_embeddings`` L2-normalizes the result."""
        if isinstance(texts, str):
            return self.encode([texts], batch_size=batch_size, normalize_embeddings=normalize_embeddings,
                               prompt_name=prompt_name, prompt=prompt)[0]
        texts = [self._prompt(prompt_name, prompt) + t for t in texts]
        if not texts:
            raise ValueError("no texts to encode")
        if self.settings.lowercase:
            texts = [t.lower() for t in texts]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(texts), unit="text", file=sys.stderr)
        out = encode_rows(encode_queries, self.towers, token_arrays(self.tokenizer, texts, self.max_length),
                          mesh=self.mesh, batch_size=_check_batch_size(batch_size or self.batch_size),
                          progress=bar.update if bar else None, multiple=self.pad_multiple)
        if bar is not None:
            bar.close()
        out = out.astype(np.float32)
        if normalize_embeddings:
            out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return out

    def _prompt(self, name: str | None, text: str | None) -> str:
        if name is not None and text is not None:
            raise ValueError("give prompt_name or prompt, not both")
        if text is not None:
            return text
        name = name if name is not None else self.settings.default_prompt_name
        if name is None:
            return ""
        if name not in self.settings.prompts:
            raise ValueError(f"prompt_name {name!r} is not among the model's prompts {sorted(self.settings.prompts)} "
                             f"({self.settings.source})")
        return self.settings.prompts[name]


def _check_batch_size(n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"batch size must be a positive integer, got {n!r}")
    return n


def read_lines(path: str | pathlib.Path) -> list[str]:
    """Lines of a UTF-8 file; empty lines are texts too, a final newline does not start one."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 at byte {e.start} ({e.reason}); convert the file to UTF-8") from e
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ranking_jax.encode", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="directory with config.json, model.safetensors, tokenizer.json "
                   "(and sentence-transformers modules); or minilm / mpnet")
    p.add_argument("--input", required=True, help="UTF-8 text file, one text per line")
    p.add_argument("--output", required=True, help="output .npy, float32 [lines, hidden]")
    p.add_argument("--pooling", choices=sorted(POOLINGS), default=None, help="default: the model's Pooling module")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalize the vectors (default: whether the model has a Normalize module)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per text incl. special tokens (default: the model's max_seq_length, else 256)")
    p.add_argument("--prompt-name", default=None, help="one of the model's prompts (config_sentence_transformers.json)")
    p.add_argument("--prompt", default=None, help="text prepended to every line")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="matmul compute dtype (bfloat16: bf16 inputs, float32 accumulation)")
    args = p.parse_args(argv)
    process.enable_compilation_cache()
    if not pathlib.Path(args.input).is_file():
        p.error(f"--input {args.input} does not exist")
    if not pathlib.Path(args.output).absolute().parent.is_dir():
        p.error(f"--output {args.output}: the folder {pathlib.Path(args.output).absolute().parent} does not exist")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        texts = read_lines(args.input)
    except ValueError as e:
        p.error(str(e))
    if not texts:
        p.error(f"--input {args.input} has no lines")
    try:
        encoder = TextEncoder(args.model, pooling=args.pooling, normalize=args.normalize, batch_size=args.batch_size,
                              max_length=args.max_length, dtype=args.dtype)
        vectors = encoder.encode(texts, prompt_name=args.prompt_name, prompt=args.prompt, progress=True)
    except ValueError as e:
        p.error(str(e))
    np.save(args.output, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
