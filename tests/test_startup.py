"""Start-up cost is part of the product: the CLI and the package must not import torch or datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_cli_import_is_light() -> None:
    code = "import sys, grutext, grutext.cli; print(sorted(m for m in ('torch', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plain_text_predict_path_does_not_import_datasets() -> None:
    code = "import sys, grutext.predict, grutext.inputs, grutext.data, grutext.checkpoint\n"
    code += "print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_training_never_imports_torch_dynamo(split_dir: Path, tmp_path: Path) -> None:
    """torch.optim's classes import torch._dynamo and sympy (1 s at start-up, 0.6 s at exit): grutext's own
    FusedAdamW and Schedule keep a whole training run, resume state included, clear of them."""
    code = (
        "import sys\n"
        "from grutext.cli import cli\n"
        f"cli(['train', {str(split_dir)!r}, '-o', {str(tmp_path / 'm')!r}, '--epochs', '1', '--max-steps', '3'],"
        " standalone_mode=False)\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_loading_a_checkpoint_never_imports_torch_dynamo(trained: Path) -> None:
    """Checking the weights' shapes builds the model on the meta device; torch's normal_ there imports
    torch._dynamo (1 s), so the embedding's shape is made without it."""
    code = (
        "import sys\nfrom grutext.checkpoint import load\n"
        f"load({str(trained)!r})\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
