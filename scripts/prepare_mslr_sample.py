"""Fetches the real MSLR-WEB10K Fold1 samples shipped in the rankeval 0.8.2 sdist (PyPI) into a data dir.

    .venv/bin/python scripts/prepare_mslr_sample.py --out data/mslr_sample

Writes ``msn1.fold1.train.5k.txt`` and ``msn1.fold1.test.5k.txt`` (5,000 lines each, 136 features, 43
queries, graded labels 0-4, SVMlight) — the ``letor/mslr_sample`` config reads them:
``ranking_jax.data.prepare(Letor, config="mslr_sample", data_dir=D, manual_dir="data/mslr_sample")``.

``pip download`` of this sdist prepares its metadata, which imports numpy and needs setuptools >= 70.1
without build isolation; so the download runs in a throwaway venv holding just those two packages.
The sdist's sha256 is checked by pip before any of its code runs, and again here. MSLR-WEB10K is Microsoft
research data (Qin & Liu, 2013); rankeval is MPL-2.0.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile

SDIST = "rankeval-0.8.2.tar.gz"
SHA256 = "c7d71602ab7fe0a0281976c1f0e883cb16431f72e4e946e5fd83790449bb21a9"
MEMBERS = ("msn1.fold1.train.5k.txt", "msn1.fold1.test.5k.txt")


def fetch(out: pathlib.Path, *, sdist: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Extracts the two sample files into ``out`` (downloading the sdist unless given); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            venv = pathlib.Path(tmp) / "venv"
            pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(pip + ["install", "numpy", "setuptools>=70.1"], check=True)
            # --require-hashes: pip checks the archive's sha256 before it runs the sdist's code to prepare metadata
            (pathlib.Path(tmp) / "req.txt").write_text(f"rankeval==0.8.2 --hash=sha256:{SHA256}\n")
            subprocess.run(pip + ["download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                                  "--require-hashes", "-d", tmp, "-r", str(pathlib.Path(tmp) / "req.txt")], check=True)
            sdist = pathlib.Path(tmp) / SDIST
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SHA256:
            raise RuntimeError(f"{sdist}: sha256 {digest} != expected {SHA256}; not the rankeval 0.8.2 sdist")
        paths = []
        with tarfile.open(sdist) as tar:
            for name in MEMBERS:
                member = tar.getmember(f"rankeval-0.8.2/rankeval/test/data/{name}")
                (out / name).write_bytes(tar.extractfile(member).read())
                paths.append(out / name)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory to write the two sample files into")
    p.add_argument("--sdist", default=None, help="an already downloaded rankeval-0.8.2.tar.gz (skips pip download)")
    args = p.parse_args()
    for path in fetch(pathlib.Path(args.out), sdist=pathlib.Path(args.sdist) if args.sdist else None):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
