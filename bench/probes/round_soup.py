"""Would the self-training rounds do better together? Each kept round alone, their weights averaged (a uniform
"model soup", Wortsman et al. 2022: the rounds all start from the same language model) and their probabilities
averaged (an ensemble), scored on the draw's test.jsonl: the development texts of a few_labels.py --dev draw.

    PYTHONPATH=bench/probes/keep_rounds:. GRUTEXT_KEEP_ROUNDS=rounds python bench/few_labels.py --data DATA \
        --datasets chnsenticorp --sizes 500 --arms unlabeled --dev 2000 --label dev --work WORK --out dev.jsonl
    python bench/probes/round_soup.py rounds/* --work WORK >> soup.jsonl
    python bench/probes/round_soup.py --table soup.jsonl

A soup is one model (the cost of one at prediction time); an ensemble of three costs three.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results import read_split
from rows import probe_main, saved_rows, set_means, set_of

from grutext.engine import load_engine


def soup(rounds: list[Path], dest: Path) -> None:
    """The last round's checkpoint with the mean of the rounds' weights (its ONNX file, now stale, left out)."""
    shutil.copytree(rounds[-1], dest, ignore=shutil.ignore_patterns("model.onnx"))
    states = [load_file(str(r / "model.safetensors")) for r in rounds]
    mean = {k: sum(s[k].astype(np.float64) for s in states) / len(states) for k in states[0]}
    mean = {k: v.astype(states[0][k].dtype) for k, v in mean.items()}
    save_file(mean, str(dest / "model.safetensors"), metadata={"format": "pt"})


def probabilities(model: Path, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    engine = load_engine(model, engine="torch")
    return np.asarray(engine.predict_proba(texts)), [str(x) for x in engine.labels]


def score(run: Path, work: Path) -> dict[str, object]:
    rows = read_split(work / run.name, "test")
    if rows is None:
        raise SystemExit(f"{work / run.name} holds no test.jsonl: give few_labels.py's --work")
    texts, gold = [r["text"] for r in rows], [str(r["label"]) for r in rows]
    rounds = sorted(run.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    probs: dict[str, np.ndarray] = {}
    labels: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, folder in enumerate(rounds):
            probs[f"round {i}"], labels = probabilities(folder, texts)
        for name, members in [("soup of all", rounds), ("soup of 1 and 2", rounds[1:])]:
            soup(members, Path(tmp) / name)
            probs[name], _ = probabilities(Path(tmp) / name, texts)
    probs["ensemble of all"] = sum(probs[f"round {i}"] for i in range(len(rounds))) / len(rounds)
    probs["ensemble of 1 and 2"] = sum(probs[f"round {i}"] for i in range(1, len(rounds))) / (len(rounds) - 1)
    result: dict[str, object] = {"run": run.name}
    for name, p in probs.items():
        result[name] = round(float(np.mean([labels[j] == g for j, g in zip(p.argmax(1), gold, strict=True)])), 4)
    return result


def table(path: Path) -> str:
    rows = saved_rows(path)
    names = [k for k in rows[0] if k != "run"]
    return set_means("", [(name, [(set_of(r), float(r[name])) for r in rows]) for name in names])


def main() -> None:
    probe_main(
        __doc__, "folders of kept rounds (round-0, round-1, ...)", lambda run, args: score(run, args.work), table
    )


if __name__ == "__main__":
    main()
