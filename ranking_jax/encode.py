"""Encode texts into vectors with a BERT-family encoder (sentence-transformers style, in JAX).

    python -m ranking_jax.encode --model DIR --input FILE.txt --output OUT.npy \
        [--pooling mean|cls] [--normalize] [--batch-size N] [--max-length N] [--dtype float32|bfloat16]

One text per input line, empty lines included, in order (row ``i`` of OUT.npy is line ``i``). Texts are
sorted by token length and batched into a few padded length buckets, so each bucket compiles once;
the output restores the input order.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ranking_jax.models import pretrained as hf
from ranking_jax.models.bi_encoder import BiEncoder
from ranking_jax.models.encoder import Encoder, check_pooling

__all__ = ["length_buckets", "encode", "TextEncoder", "module_fn", "read_lines", "main"]


def length_buckets(max_length: int, *, smallest: int = 16) -> tuple[int, ...]:
    """Padded lengths ``16, 32, 64, ...`` up to and including ``max_length``."""
    out, n = [], smallest
    while n < max_length:
        out.append(n)
        n *= 2
    return tuple(out) + (max_length,)


def module_fn(model: nnx.Module, method: str = "__call__", **kwargs) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A jitted ``(ids, mask) -> vectors`` calling ``model.<method>(ids, mask, **kwargs)``; compiles once per shape."""
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda state, ids, mask: getattr(nnx.merge(graphdef, state), method)(ids, mask, **kwargs))
    return lambda ids, mask: f(state, ids, mask)


def encode(embed: Callable[[jax.Array, jax.Array], jax.Array], tokenizer, texts: Sequence[str], *,
           batch_size: int = 32, max_length: int = 256, progress: bool = False) -> np.ndarray:
    """``embed`` over ``texts`` in length-sorted, bucket-padded batches; returns float32 ``[N, D]`` in input order.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` (``load_tokenizer`` truncates to ``max_length``). Every
    batch has exactly ``batch_size`` rows (the last one is padded with empty rows) and a bucket length,
    so there are at most ``len(length_buckets(max_length))`` distinct shapes.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode")
    encodings = tokenizer.encode_batch(texts)
    lengths = np.array([len(e.ids) for e in encodings])
    if lengths.max() > max_length:
        raise ValueError(f"a text has {lengths.max()} tokens > max_length {max_length}; load the tokenizer "
                         f"with load_tokenizer(path, max_length={max_length})")
    buckets = np.array(length_buckets(max_length))
    order = np.argsort(-lengths, kind="stable")  # longest first: the slowest shapes compile up front
    out: np.ndarray | None = None
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(texts), unit="text", file=sys.stderr)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        t = int(buckets[np.searchsorted(buckets, lengths[rows].max())])
        ids = np.zeros((batch_size, t), np.int32)
        mask = np.zeros((batch_size, t), np.int32)
        for r, i in enumerate(rows):
            n = lengths[i]
            ids[r, :n] = encodings[i].ids
            mask[r, :n] = 1
        vecs = np.asarray(embed(jnp.asarray(ids), jnp.asarray(mask)), np.float32)[: len(rows)]
        if out is None:
            out = np.empty((len(texts), vecs.shape[-1]), np.float32)
        out[rows] = vecs
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return out


class TextEncoder:
    """Texts -> vectors with a pretrained dir (or an :class:`Encoder` plus its tokenizer dir).

    ``TextEncoder("path/to/model", pooling="mean", normalize=True).encode(texts)`` reproduces
    sentence-transformers' ``encode`` for mean-pooling models.
    """

    def __init__(self, model: str | pathlib.Path | Encoder, *, tokenizer_dir: str | pathlib.Path | None = None,
                 pooling: str = "mean", normalize: bool = False, batch_size: int = 32, max_length: int = 256,
                 dtype: str = "float32"):
        check_pooling(pooling)
        if isinstance(model, Encoder):
            if tokenizer_dir is None:
                raise ValueError("an Encoder instance needs tokenizer_dir= (the directory of its tokenizer.json)")
            encoder = model
        else:
            tokenizer_dir = tokenizer_dir or model
            encoder = hf.from_pretrained(model, dtype=dtype)
        max_pos = encoder.config.max_position_embeddings
        if max_length > max_pos:
            raise ValueError(f"max_length {max_length} exceeds the model's max_position_embeddings {max_pos}")
        self.tokenizer = hf.load_tokenizer(tokenizer_dir, max_length=max_length)
        self.batch_size, self.max_length = batch_size, max_length
        towers = BiEncoder(encoder, pooling=pooling, similarity="cosine" if normalize else "dot")
        self._embed = module_fn(towers, "encode_queries")

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return encode(self._embed, self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length,
                      progress=progress)


def read_lines(path: str | pathlib.Path) -> list[str]:
    """Lines of a UTF-8 file; empty lines are texts too, a final newline does not start one."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ranking_jax.encode", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="directory with config.json, model.safetensors, tokenizer.json")
    p.add_argument("--input", required=True, help="UTF-8 text file, one text per line")
    p.add_argument("--output", required=True, help="output .npy, float32 [lines, hidden]")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    p.add_argument("--normalize", action="store_true", help="L2-normalize the vectors")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256, help="tokens per text incl. [CLS]/[SEP] (truncation)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="matmul compute dtype (bfloat16: bf16 inputs, float32 accumulation)")
    args = p.parse_args(argv)
    if not pathlib.Path(args.input).is_file():
        p.error(f"--input {args.input} does not exist")
    texts = read_lines(args.input)
    if not texts:
        p.error(f"--input {args.input} has no lines")
    encoder = TextEncoder(args.model, pooling=args.pooling, normalize=args.normalize, batch_size=args.batch_size,
                          max_length=args.max_length, dtype=args.dtype)
    vectors = encoder.encode(texts, progress=True)
    np.save(args.output, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
