"""Start-up cost is part of the product: the CLI and the package must not import torch or datasets."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_is_light() -> None:
    code = "import sys, grutext, grutext.cli; print(sorted(m for m in ('torch', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plain_text_predict_path_does_not_import_datasets() -> None:
    code = "import sys, grutext.predict, grutext.data, grutext.checkpoint; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_background_import_loads_the_module_and_swallows_failures() -> None:
    code = (
        "import sys, threading\n"
        "from grutext.train import _import_in_background\n"
        "errors = []\n"
        "threading.excepthook = lambda args: errors.append(args.exc_value)\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "_import_in_background('torch._dynamo').join()\n"
        "_import_in_background('grutext_no_such_module').join()\n"
        "print('torch._dynamo' in sys.modules, errors)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True []"
