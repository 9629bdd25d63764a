"""How often predict ends badly when stopped by a signal or a closed pipe: exit codes and stderr, tallied.

    python bench/signals.py --model models/x --runs 100
    python bench/signals.py --model models/x --runs 100 --grutext "env PYTHONPATH=/old/checkout python -m grutext"

Case 1 (the `tail -f app.log | grutext predict` case): one line on stdin, which then stays open and idle;
SIGINT (or SIGTERM) 0.2-0.7 s after the answer. Case 2: `grutext predict MODEL FILE | head -2` over a
60,000-line CSV (plain and gzipped). Each run is classified by its exit status and by what stderr shows
(an abort: "Fatal Python error", "terminate called"; a traceback). tests/test_signals.py holds the same
cases as assertions; this script prints the rates, for comparing two builds in one sitting.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def classify(code: int, err: str) -> str:
    for marker in ("Fatal Python error", "terminate called", "Traceback"):
        if marker in err:
            return f"exit {code}, {marker}"
    return f"exit {code}"


def idle_stdin(grutext: list[str], model: str, signum: int, delay: float) -> str:
    proc = subprocess.Popen(
        [*grutext, "predict", "-m", model], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    proc.stdout.readline()
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    proc.stdin.close()
    return classify(proc.returncode, err.decode(errors="replace"))


def into_head(grutext: list[str], model: str, path: Path) -> str:
    command = f"{shlex.join(grutext)} predict -m {model} {path} | head -2 >/dev/null; echo rc=${{PIPESTATUS[0]}} >&2"
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120, check=False)
    err = done.stderr.decode(errors="replace")
    return classify(int(err.rsplit("rc=", 1)[-1]), err.rsplit("rc=", 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--grutext", default=f"{sys.executable} -m grutext", help="the command to test")
    args = parser.parse_args()
    grutext = shlex.split(args.grutext)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        words = ["the", "film", "was", "wonderful", "dreadful", "plot", "cast"]
        rows = "".join(f"{' '.join(rng.choices(words, k=rng.randint(3, 30)))},x\n" for _ in range(60_000))
        csv = Path(tmp) / "texts.csv"
        csv.write_text("text,label\n" + rows, encoding="utf-8")
        gz = Path(tmp) / "texts.csv.gz"
        gz.write_bytes(gzip.compress(csv.read_bytes()))
        cases = {
            "SIGINT on an idle stdin": lambda: idle_stdin(grutext, args.model, signal.SIGINT, rng.uniform(0.2, 0.7)),
            "SIGTERM on an idle stdin": lambda: idle_stdin(grutext, args.model, signal.SIGTERM, rng.uniform(0.2, 0.7)),
            "predict FILE.csv | head -2": lambda: into_head(grutext, args.model, csv),
            "predict FILE.csv.gz | head -2": lambda: into_head(grutext, args.model, gz),
        }
        for name, case in cases.items():
            with ThreadPoolExecutor(max_workers=2) as pool:
                tally = collections.Counter(pool.map(lambda _, run=case: run(), range(args.runs)))
            print(f"{name}: " + ", ".join(f"{n} x {outcome}" for outcome, n in tally.most_common()), flush=True)


if __name__ == "__main__":
    main()
