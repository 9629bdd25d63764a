"""Peak RSS and throughput of `grutext train --streaming` over a generated jsonl of long texts.

    python bench/stream_memory.py --size-mb 300 --runs 2
    python bench/stream_memory.py --size-mb 3072 --env MALLOC_ARENA_MAX=2

The file holds the texts tests/test_streaming.py trains on (20-400 words from a ten-word vocabulary, two
labels), repeated to the size asked for; memory is flat in the file's size, so 300 MB shows what 3 GB does.
Each run trains 300 steps in a fresh process under a wrapper that reports that process's peak RSS only.
--checkout runs another build (a worktree of an older commit) for a same-sitting A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def generate(path: Path, size: int) -> None:
    rng = random.Random(0)
    words = ["film", "plot", "superb", "dreadful", "cast", "music", "scene", "story", "awful", "moving"]
    lines = [
        json.dumps({"text": " ".join(rng.choices(words, k=rng.randint(20, 400))), "label": rng.choice("ab")})
        for _ in range(2000)
    ]
    block = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as fh:
        while fh.tell() < size:
            fh.write(block)


def run(data: Path, out: Path, checkout: Path | None, env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in GiB, training tokens/s) of one 300-step streaming run."""
    args = [
        sys.executable, "-m", "grutext", "train", str(data), "-o", str(out), "--overwrite", "--streaming",
        "--labels", "a,b", "--tokenizer-sample", "20000", "--steps-per-epoch", "300", "--epochs", "1",
    ]  # fmt: skip
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    if checkout is not None:
        full_env["PYTHONPATH"] = str(checkout)
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=checkout or None,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    speed = re.findall(r"([\d,]+) tok/s", done.stderr)
    return int(done.stdout.split()[-1]) / 2**20, float(speed[-1].replace(",", "")) if speed else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--checkout", type=Path, help="run this build instead (a worktree of another commit)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the training process")
    a = parser.parse_args()
    env = dict(item.split("=", 1) for item in a.env)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "big.jsonl"
        generate(data, a.size_mb * 2**20)
        results = [run(data, Path(tmp) / "m", a.checkout, env) for _ in range(a.runs)]
    for peak, speed in results:
        print(f"peak RSS {peak:.2f} GiB, {speed:,.0f} train tokens/s")
    if len(results) > 1:
        print(f"median: {statistics.median(p for p, _ in results):.2f} GiB, "
              f"{statistics.median(s for _, s in results):,.0f} tokens/s")  # fmt: skip


if __name__ == "__main__":
    main()
