"""``python -m ranking_jax.encode``: sentence embeddings of a text file, in input order with empty lines kept,
against sentence-transformers' all-MiniLM-L6-v2 embeddings (fixture)."""

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
