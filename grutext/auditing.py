"""`grutext audit DATA`: training rows whose label is likely wrong, by confident learning (Northcutt, Jiang and
Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels").

  1. Out-of-sample probabilities: the rows are cut into k folds (stratified by label, seeded), and each fold is
     labelled by a model trained, at the run's own settings, on the other k - 1 (its validation carved from
     them, as any training run carves it). No row is scored by a model that saw it.
  2. Confident learning, by cleanlab (the reference implementation, `pip install 'grutext[audit]'`): per class,
     the mean probability the models give that class on the rows labelled with it is the class's threshold; a
     row is confidently of class j when its probability of j reaches j's threshold; the counts of (given label,
     confident class) estimate how many rows of each given label are really of each other class, and that many
     rows, those with the largest margin for the other class, are flagged (cleanlab's prune_by_noise_rate).
     Multi-label data is audited label by label (one-vs-rest), as cleanlab does it.
  3. Flagged rows are ranked by how little probability the models left to the given label (self-confidence),
     the most suspect first.

The fold models live in a temporary folder and are removed at the end; nothing is written beside the data.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from grutext.errors import ConfigError, UsageError

DEFAULT_FOLDS = 5
MIN_ROWS_PER_FOLD = 10  # each fold's model carves its own validation split from the others


@dataclass
class Suspect:
    """A row whose label is likely wrong. `row` counts the split's rows from 1, in the order they were read."""

    row: int
    text: str
    label: list[str]  # as given (one label, or a multi-label row's labels)
    suggested: list[str]  # what the out-of-sample models give it
    score: float  # how surely the given label is wrong: 1 - the given label's quality score, from 0 to 1

    def record(self, multi_label: bool) -> dict[str, Any]:
        """The row as `grutext audit --format jsonl` prints it."""
        if multi_label:
            return {"row": self.row, "text": self.text, "labels": self.label, "suggested": self.suggested,
                    "score": round(self.score, 6)}  # fmt: skip
        return {"row": self.row, "text": self.text, "label": self.label[0], "suggested": self.suggested[0],
                "score": round(self.score, 6)}  # fmt: skip


@dataclass
class AuditResult:
    suspects: list[Suspect]
    rows: int
    folds: int
    split: str
    labels: list[str]
    multi_label: bool
    probs: npt.NDArray[np.float64]  # out-of-sample probabilities [rows, labels]
    pairs: dict[str, int] = field(default_factory=dict)  # "given -> suggested": flagged rows


@dataclass
class FoldDone:
    """A fold's model is trained and has scored its held-out rows."""

    fold: int
    folds: int
    rows: int
    seconds: float


def _cleanlab() -> Any:
    try:
        import cleanlab.filter
        import cleanlab.multilabel_classification.filter
        import cleanlab.multilabel_classification.rank
        import cleanlab.rank
    except ImportError:
        raise ConfigError(
            "grutext audit needs cleanlab (confident learning's reference implementation); install it with "
            "`pip install 'grutext[audit]'` or `pip install cleanlab`"
        ) from None
    return cleanlab


def fold_of_rows(labels: list[list[str]], folds: int, seed: int) -> list[int]:
    """Each row's fold: rows shuffled (seeded) within their label (the first, for multi-label rows), then dealt
    round the folds, so every fold holds each label about equally."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(labels):
        by_label.setdefault(row[0] if row else "", []).append(i)
    fold = [0] * len(labels)
    dealt = 0
    for name in sorted(by_label):
        rows = by_label[name]
        rng.shuffle(rows)
        for i in rows:
            fold[i] = dealt % folds
            dealt += 1
    return fold


def out_of_sample_probs(
    texts: list[str],
    labels: list[list[str]],
    multi_label: bool,
    train_fold: Callable[[Path, int], Path],
    folds: int,
    seed: int,
    work: Path,
    on_fold: Callable[[FoldDone], None] | None = None,
) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Probabilities [rows, labels] from models that never saw the row: `train_fold(file, k)` trains on the
    jsonl `file` (every fold but k) and returns the checkpoint's folder."""
    from grutext.engine import load_engine

    fold = fold_of_rows(labels, folds, seed)
    names = sorted({name for row in labels for name in row})
    probs = np.zeros((len(texts), len(names)))
    for k in range(folds):
        start = time.perf_counter()
        train_file = work / f"fold-{k}" / "train.jsonl"
        train_file.parent.mkdir(parents=True, exist_ok=True)
        with open(train_file, "w", encoding="utf-8") as fh:
            for i, (text, row) in enumerate(zip(texts, labels, strict=True)):
                if fold[i] != k:
                    record = {"text": text, "labels": row} if multi_label else {"text": text, "label": row[0]}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        model_dir = train_fold(train_file, k)
        engine = load_engine(model_dir)
        held = [i for i in range(len(texts)) if fold[i] == k]
        got = np.asarray(engine.predict_proba([texts[i] for i in held]), dtype=np.float64)
        column = [engine.labels.index(name) if name in engine.labels else -1 for name in names]
        for c, source in enumerate(column):
            if source >= 0:  # a label the fold's training rows never held gets probability 0
                probs[held, c] = got[:, source]
        shutil.rmtree(model_dir, ignore_errors=True)
        if on_fold is not None:
            on_fold(FoldDone(k + 1, folds, len(held), time.perf_counter() - start))
    return probs, names


def find_suspects(
    probs: npt.NDArray[np.float64], labels: list[list[str]], names: list[str], multi_label: bool, texts: list[str]
) -> list[Suspect]:
    """Confident learning over out-of-sample probabilities (cleanlab's find_label_issues with its defaults), the
    flagged rows ranked by self-confidence, most suspect first."""
    cl = _cleanlab()
    index = {name: i for i, name in enumerate(names)}
    if multi_label:
        given = [[index[name] for name in row] for row in labels]
        flagged = cl.multilabel_classification.filter.find_label_issues(given, probs)
        quality = cl.multilabel_classification.rank.get_label_quality_scores(given, probs)
    else:
        given_one = np.array([index[row[0]] for row in labels])
        flagged = cl.filter.find_label_issues(given_one, probs)
        quality = cl.rank.get_label_quality_scores(given_one, probs, method="self_confidence")
    order = sorted(np.flatnonzero(flagged).tolist(), key=lambda i: (float(quality[i]), i))
    out = []
    for i in order:
        if multi_label:
            suggested = [names[c] for c in np.flatnonzero(probs[i] >= 0.5)] or [names[int(probs[i].argmax())]]
        else:
            suggested = [names[int(probs[i].argmax())]]
        out.append(Suspect(i + 1, texts[i], list(labels[i]), suggested, float(1.0 - quality[i])))
    return out


def audit(
    data: str,
    options: Mapping[str, Any] | None = None,
    *,
    folds: int = DEFAULT_FOLDS,
    split: str | None = None,
    on_fold: Callable[[FoldDone], None] | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> AuditResult:
    """Audit the labels of `data`'s `split` (train by default, or the only split): k-fold out-of-sample
    probabilities at the settings `options` names (as `grutext train`'s flags), then confident learning."""
    from grutext.data import load_labelled
    from grutext.settings import configs_from_options
    from grutext.training import train

    _cleanlab()  # before any training: a missing package is a message, not an hour lost
    options = dict(options or {})
    spec, tok_cfg, model_cfg, cfg = configs_from_options(data, options)
    if cfg.streaming:
        raise UsageError("audit trains k models on the rows in memory; drop --streaming")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer of at least 2, got {folds!r}")
    loaded = load_labelled(spec.source, **spec.read_options())
    chosen = split or ("train" if "train" in loaded.splits else next(iter(loaded.splits)))
    if chosen not in loaded.splits:
        raise ConfigError(f"{data} has no {chosen!r} split (splits: {', '.join(loaded.splits)})")
    rows = loaded.splits[chosen]
    if len(rows.texts) < folds * MIN_ROWS_PER_FOLD:
        raise ConfigError(
            f"{rows.origin}: {len(rows.texts)} rows are too few to audit in {folds} folds (each fold's model trains "
            f"on the others and needs a validation split of its own); at least {folds * MIN_ROWS_PER_FOLD}"
        )
    label_column = "labels" if loaded.multi_label else "label"
    work = Path(tempfile.mkdtemp(prefix="grutext-audit-"))
    try:

        def train_fold(file: Path, k: int) -> Path:
            from grutext.settings import DataSpec

            fold_spec = DataSpec(str(file), text_column="text", label_column=label_column)
            out = file.parent / "model"
            train(fold_spec, tok_cfg, model_cfg, cfg, out, on_event=on_event)
            return out

        probs, names = out_of_sample_probs(
            rows.texts, rows.labels, loaded.multi_label, train_fold, folds, cfg.seed, work, on_fold
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    suspects = find_suspects(probs, rows.labels, names, loaded.multi_label, rows.texts)
    pairs: dict[str, int] = {}
    for s in suspects:
        key = f"{','.join(s.label)} -> {','.join(s.suggested)}"
        pairs[key] = pairs.get(key, 0) + 1
    pairs = dict(sorted(pairs.items(), key=lambda kv: -kv[1]))
    return AuditResult(suspects, len(rows.texts), folds, chosen, names, loaded.multi_label, probs, pairs)
