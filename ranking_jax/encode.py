"""Encode texts into vectors with a BERT-family encoder (sentence-transformers style, in JAX).

    python -m ranking_jax.encode --model DIR --input FILE.txt --output OUT.npy \
        [--pooling mean|cls] [--normalize] [--batch-size N] [--max-length N] [--dtype float32|bfloat16]

One text per input line, empty lines included, in order (row ``i`` of OUT.npy is line ``i``). Texts are
encoded on the one length-bucketing path of training and evaluation (:func:`ranking_jax.data.encoding.encode_rows`:
sorted by token length, a few padded bucket lengths, each compiled once, over all local devices); the output
restores the input order.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

import jax
import numpy as np

from ranking_jax import sharding
from ranking_jax.data.encoding import encode_queries, encode_rows
from ranking_jax.models import pretrained as hf
from ranking_jax.models.bi_encoder import BiEncoder
from ranking_jax.models.encoder import Encoder, check_pooling

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
        self.towers = BiEncoder(encoder, pooling=pooling, similarity="cosine" if normalize else "dot")
        self.mesh = sharding.make_mesh([("data", -1)], devices=jax.local_devices())

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """float32 ``[N, D]`` in the order of ``texts``."""
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to encode")
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(texts), unit="text", file=sys.stderr)
        out = encode_rows(encode_queries, self.towers, token_arrays(self.tokenizer, texts, self.max_length),
                          mesh=self.mesh, batch_size=self.batch_size, progress=bar.update if bar else None)
        if bar is not None:
            bar.close()
        return out.astype(np.float32)


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
