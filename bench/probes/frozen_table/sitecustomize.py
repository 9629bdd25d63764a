"""Probe-only: the language model keeps the --vectors word table as the file gave it (the table never learns).

With this folder first on PYTHONPATH and GRUTEXT_FREEZE_LM_TABLE=1 set, `grutext pretrain --vectors FILE` (and the
language model `grutext train --unlabeled --vectors` trains) trains its encoder and output words over a fixed input
table; the classifier then fine-tunes the table as usual. Measures whether the language model's drift away from
the file's vectors is what costs sst2 with 30 passes (docs/experiments.md). Give few_labels.py a --work folder of
its own: the cached language model's name does not say its table was frozen.

    PYTHONPATH=bench/probes/frozen_table:. GRUTEXT_FREEZE_LM_TABLE=1 python bench/few_labels.py ... --work W
"""

import os
from typing import Any

if os.environ.get("GRUTEXT_FREEZE_LM_TABLE"):
    import grutext.pretraining as _pretraining

    _build = _pretraining._language_model

    def _frozen_language_model(model_cfg: Any, vocab: int, table: Any, counts: Any, tokens: int) -> Any:
        model = _build(model_cfg, vocab, table, counts, tokens)
        if table is not None:
            model.embedding.weight.requires_grad_(False)
        return model

    _pretraining._language_model = _frozen_language_model
