"""Probe-only: keep the self-training rounds of `grutext train --unlabeled` for bench/probes/round_soup.py.

The command removes its stage folder (the language model and each round's checkpoint) once the kept round is
saved. With this folder first on PYTHONPATH and GRUTEXT_KEEP_ROUNDS=DIR set, Python imports this module at start
and each round's checkpoint is copied to DIR/<the data folder's name>/round-N before the folder goes:

    PYTHONPATH=bench/probes/keep_rounds:. GRUTEXT_KEEP_ROUNDS=rounds python bench/few_labels.py ... --arms unlabeled
"""

import os
import shutil
import sys
from typing import Any

_rmtree = shutil.rmtree


def _keeping_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
    keep = os.environ.get("GRUTEXT_KEEP_ROUNDS")
    folder = os.fspath(path)
    if keep and folder.endswith(".unlabeled") and os.path.isfile(os.path.join(folder, "round-0", "config.json")):
        name = os.path.basename(sys.argv[2].rstrip("/")) if len(sys.argv) > 2 else "run"  # grutext train DATA
        for entry in sorted(os.listdir(folder)):
            dest = os.path.join(keep, name, entry)
            if entry.startswith("round-") and not os.path.exists(dest):
                shutil.copytree(os.path.join(folder, entry), dest, ignore=shutil.ignore_patterns("trainer_state*"))
    _rmtree(path, *args, **kwargs)


shutil.rmtree = _keeping_rmtree  # type: ignore[assignment]
