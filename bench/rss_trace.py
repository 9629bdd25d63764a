"""A command's resident memory over time, beside the progress lines it writes to stderr: where the peak is.

    python bench/rss_trace.py -- grutext train DATA/imdb --output /tmp/m --overwrite --epochs 1 \\
        --embed-dim 128 --hidden-size 128 --layers 1 --no-bidirectional

Polls /proc/PID/status (Linux) every 0.25 s. Prints the peak, then each stderr line with the peak so far,
then the RSS every 5 s.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time


def rss_mib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.exit(__doc__)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    samples: list[tuple[float, int]] = []

    def poll() -> None:
        while proc.poll() is None:
            value = rss_mib(proc.pid)
            if value is not None:
                samples.append((time.perf_counter() - start, value))
            time.sleep(0.25)

    threading.Thread(target=poll, daemon=True).start()
    lines: list[tuple[float, str]] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        text = line.strip()[:100]
        if lines and " step " in lines[-1][1] and " step " in text:  # progress updates: keep the last
            lines[-1] = (time.perf_counter() - start, text)
        else:
            lines.append((time.perf_counter() - start, text))
    proc.wait()
    if not samples:
        sys.exit("no samples (the command ended at once, or this is not Linux)")
    at, peak = max(samples, key=lambda s: s[1])
    print(f"peak RSS {peak} MiB at {at:.1f} s; exit status {proc.returncode}")
    for when, text in lines:
        so_far = max((value for t, value in samples if t <= when), default=0)
        print(f"{when:7.1f} s  peak so far {so_far:5d} MiB  {text}")
    print("every 5 s:", ", ".join(f"{t:.0f}s {v}" for t, v in samples[::20]))


if __name__ == "__main__":
    main()
