"""Where the whole `grutext train` command's time goes, phase by phase, from a sampling profile.

    python bench/profile_command.py --data DATA --dataset sst2 [-- extra train options]
    python bench/profile_command.py --data DATA --dataset imdb -- --epochs 1 --no-bidirectional

Runs `grutext train DATA/<dataset>` under py-spy (a sampling profiler, about 1% overhead), takes every
sample of the main thread, busy or waiting (so native code such as the tokenizer's counts too), sorts it into
a phase by the functions on its stack, and prints a markdown table of seconds and shares. Phases: start-up
imports, data loading, tokenizer training, encoding (token ids), character n-grams, batching, the training
step (forward, backward, optimizer), validation and calibration, test scoring, checkpoint and ONNX export.
With --save-raw the profile is kept for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (phase, markers): a sample belongs to the first phase one of whose markers is a function on its stack. The
# outer phases (scoring, validation, saving) come first, so a forward pass inside validation counts there.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("test scoring", ("score_test", "_final_scores")),
    ("validation + calibration", ("ClassifierObjective.validate", "ClassifierObjective.calibrate", "end_epoch")),
    ("ONNX export", ("onnx_export", "export (grutext/onnx")),
    ("checkpoint", ("checkpoint_writer", "write_atomically")),
    ("tokenizer training", ("train_tokenizer",)),
    ("character n-grams", ("gram_bags", "char_grams", "_grams_of_ids")),
    ("encoding (token ids)", ("encode (grutext/tokenizer", "encode_inputs")),
    ("batching", ("collate", "pad_grams", "bucket_batches", "MemoryBatches.batches")),
    ("step: forward", ("ClassifierObjective.loss",)),
    ("step: backward", ("Tensor.backward",)),
    ("step: optimizer", ("TrainingOptimizer", "ReferenceOptimizer")),
    ("data loading", ("load_labelled", "read_memory", "datasets")),
    ("start-up imports", ("_find_and_load",)),
]


def phase_of(stack: str) -> str:
    for phase, markers in PHASES:
        if any(marker in stack for marker in markers):
            return phase
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of <name>/{train,validation,test}.jsonl")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--save-raw", type=Path, help="keep py-spy's raw (collapsed-stack) profile here")
    parser.add_argument("train_options", nargs="*", help="after --: options passed on to grutext train")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    grutext = str(Path(sys.executable).with_name("grutext"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.save_raw or Path(tmp) / "profile.txt"
        # --idle --threads: every sample of the main thread, inside native code (tokenizers, the kernel) too
        command = [spy, "record", "-r", str(args.rate), "--idle", "--threads", "-f", "raw", "-o", str(raw), "--"]
        command += [grutext, "train", str(args.data / args.dataset), "--output", str(Path(tmp) / "model")]
        command += ["--overwrite", *args.train_options]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"Error: grutext train failed:\n{done.stderr[-2000:]}")
        samples: collections.Counter[str] = collections.Counter()
        for line in raw.read_text(encoding="utf-8").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack.startswith("thread (") and stack.split(";", 1)[0].endswith("MainThread"):
                samples[phase_of(stack)] += int(count)
    total = sum(samples.values())
    print(f"grutext train {args.dataset} {' '.join(args.train_options)}: {wall:.1f} s wall, {total:,} samples\n")
    print("| phase | seconds | share |\n|---|---:|---:|")
    for phase in [p for p, _ in PHASES] + ["other"]:
        if samples[phase]:
            share = samples[phase] / total
            print(f"| {phase} | {share * wall:.1f} | {share:.0%} |")


if __name__ == "__main__":
    main()
