"""grutext pretrain, train --init-from (a language model, a classifier) and train --unlabeled: what they write,
that the weights really travel, resume, and the clean errors on bad input."""

from __future__ import annotations

import json
import math
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import grutext
from grutext.cli import cli
from grutext.config import ModelConfig, PretrainConfig, TokenizerConfig, TrainConfig
from grutext.errors import ConfigError, DataError, Interrupted
from grutext.events import RoundKept, StageStarted, StepDone
from grutext.pretraining import pretrain
from grutext.semisupervised import kept_round, pretrain_settings
from tests.conftest import FILLER, NEGATIVE, POSITIVE, TINY, sentiment_rows, write_jsonl

SMALL = ["--embed-dim", "16", "--hidden-size", "16", "--vocab-size", "300"]
TOK = TokenizerConfig(vocab_size=300)
MODEL = ModelConfig(embed_dim=16, hidden_size=16)


def corpus_lines(n: int, seed: int = 0) -> list[str]:
    """Unlabelled review-like sentences of the conftest vocabulary, with an order to learn (adverb, adjective)."""
    rng = random.Random(seed)
    return [
        " ".join([*rng.sample(FILLER, 4), "really", rng.choice(POSITIVE + NEGATIVE), *rng.sample(FILLER, 2)])
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(corpus_lines(600)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "lm"
    result = CliRunner().invoke(cli, ["pretrain", str(corpus), "-o", str(out), *SMALL, "--epochs", "3", "--json"])
    assert result.exit_code == 0, result.output
    return out


def test_pretrain_writes_a_language_model_that_info_describes(lm: Path) -> None:
    assert sorted(p.name for p in lm.iterdir()) == [
        "config.json",
        "metrics.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    config = json.loads((lm / "config.json").read_text())
    assert config["kind"] == "language_model" and config["corpus"]["texts"] > 500
    history = json.loads((lm / "metrics.json").read_text())["history"]
    assert history[-1]["val_score"] < history[0]["val_score"] < config["vocab_size"]  # it learns the corpus
    info = CliRunner().invoke(cli, ["info", "-m", str(lm), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["kind"] == "language_model"
    refused = CliRunner().invoke(cli, ["predict", "-m", str(lm)], input="great film\n")
    assert refused.exit_code == 1 and "is a language model" in refused.stderr and "--init-from" in refused.stderr


def test_the_language_model_reads_no_future_at_any_depth() -> None:
    """Each direction's prediction at a position depends only on the tokens it has read: changing a later
    token leaves the forward states before it unchanged (and earlier tokens the backward ones), two layers deep."""
    from grutext.lm import LanguageModel

    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=6, hidden_size=5, layers=2, dropout=0.0).resolved_for(False, "bpe")
    lm = LanguageModel(cfg, 30).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    lengths = torch.tensor([6])
    hidden, _ = lm.states(ids, lengths)
    changed = ids.clone()
    changed[0, 5] = 9  # the last token: forward positions 0..4 predict up to it, none reads it
    again, _ = lm.states(changed, lengths)
    torch.testing.assert_close(hidden[:5], again[:5])  # the forward direction, positions 0..4
    changed = ids.clone()
    changed[0, 0] = 9  # the first token: the backward direction reads it last
    again, _ = lm.states(changed, lengths)
    torch.testing.assert_close(hidden[5:], again[5:])


def test_init_from_starts_with_the_language_models_table_and_encoder(lm: Path, split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = CliRunner().invoke(
        cli, ["train", str(split_dir), "-o", str(out), "--init-from", str(lm), "--epochs", "1", "--lr", "1e-9"]
    )
    assert result.exit_code == 0, result.output
    before, after = load_file(str(lm / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for key in ("embedding.weight", "encoder.forward_layers.0.rnn.weight_hh_l0"):
        torch.testing.assert_close(after[key], before[key], atol=1e-5, rtol=0)
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"]["kind"] == "language_model" and config["model"]["hidden_size"] == 16
    assert (
        json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
        == json.loads((lm / "tokenizer.json").read_text())["model"]["vocab"]
    )


def test_init_from_refuses_what_it_cannot_start_from(lm: Path, split_dir: Path, tmp_path: Path) -> None:
    def train(*args: str) -> object:
        return CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(tmp_path / "m"), *args])

    clash = train("--init-from", str(lm), "--hidden-size", "64")
    assert clash.exit_code == 2 and "fixes --hidden-size (16, not 64)" in clash.output
    not_a_checkpoint = train("--init-from", str(tmp_path))
    assert not_a_checkpoint.exit_code == 1 and "not a grutext checkpoint" in not_a_checkpoint.stderr
    with_vectors = train("--init-from", str(lm), "--vectors", str(tmp_path / "v.txt"))
    assert with_vectors.exit_code == 2 and "brings its own word table" in with_vectors.output
    chinese = tmp_path / "zh"
    write_jsonl(chinese / "train.jsonl", sentiment_rows(80, chinese=True))
    wrong_language = CliRunner().invoke(cli, ["train", str(chinese), "-o", str(tmp_path / "z"), "--init-from", str(lm)])
    assert wrong_language.exit_code == 1 and "does not fit this data" in wrong_language.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no text"),
        (b"\n  \n\n", "holds no text"),
        (b"\x00\x01\x02 binary", "looks like a binary file"),
        ("".join(f"word{i} other{i}\n" for i in range(300)).encode(), "unknown to the tokenizer"),
    ],
)
def test_pretrain_bad_corpora_are_clean_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["pretrain", str(path), "-o", str(tmp_path / "lm"), *SMALL])
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("Error:")
    assert not (tmp_path / "lm").exists()


def test_pretrain_interrupted_then_resumed_equals_uninterrupted(corpus: Path, tmp_path: Path) -> None:
    cfg = PretrainConfig(epochs=2, device="cpu")
    straight = pretrain([str(corpus)], TOK, MODEL, cfg, tmp_path / "straight")

    def stop(event: object) -> None:
        if isinstance(event, StepDone) and event.global_step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="--resume"):
        pretrain([str(corpus)], TOK, MODEL, cfg, tmp_path / "cut", on_event=stop)
    with pytest.raises(ConfigError, match="settings differ"):
        pretrain([str(corpus)], TOK, MODEL, PretrainConfig(epochs=2, lr=0.01), tmp_path / "cut", resume=True)
    resumed = pretrain([str(corpus)], TOK, MODEL, cfg, tmp_path / "cut", resume=True)
    a, b = load_file(str(straight.path / "model.safetensors")), load_file(str(resumed.path / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert math.isclose(straight.metrics["perplexity"], resumed.metrics["perplexity"])


def test_unlabeled_pretrains_then_trains_in_one_command(corpus: Path, split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = ["train", str(split_dir), "-o", str(out), *TINY, "--unlabeled", str(corpus), "--pretrain-epochs", "2"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert "held out for perplexity" in result.stderr and "saved" in result.stderr
    config = json.loads((out / "config.json").read_text())
    started = config["init_from"]
    assert started["kind"] == "language_model" and started["corpus"]["texts"] >= 600  # the corpus and train's texts
    assert started["metrics"]["perplexity"] > 1 and config["train"]["unlabeled"] == [str(corpus)]
    assert started["metrics"]["epochs_run"] == 2 and config["train"]["pretrain_epochs"] == 2  # the passes asked
    assert not list(tmp_path.glob(".m.pretrained*"))  # the stage's folder is gone
    assert json.loads(result.stdout)["test"]["accuracy"] > 0.5


def test_init_from_a_classifier_keeps_its_labels_and_adds_new_ones(trained: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    rows = sentiment_rows(120, seed=7) + [{"text": f"the plot was okay {w}", "label": "meh"} for w in FILLER * 3]
    write_jsonl(data / "train.jsonl", rows)
    write_jsonl(data / "test.jsonl", sentiment_rows(20, seed=8))
    out = tmp_path / "m"
    model = grutext.train(data, out, init_from=str(trained), epochs=2, lr=0.01)
    assert model.labels == ["neg", "pos", "meh"]  # the old labels keep their rows, the new one comes after
    metrics = json.loads((out / "metrics.json").read_text())
    assert "previous_test" in metrics and metrics["previous_test"]["n"] == 60  # the old data's test split
    old = load_file(str(trained / "model.safetensors"))
    new = load_file(str(out / "model.safetensors"))
    assert new["classifier.weight"].shape[0] == 3 and old["classifier.weight"].shape[0] == 2
    shown = CliRunner().invoke(cli, ["info", "-m", str(out)])
    assert "started from classifier" in " ".join(shown.stderr.replace("│", " ").split())
    described = json.loads(CliRunner().invoke(cli, ["info", "-m", str(out), "--json"]).stdout)
    assert described["init_from"]["kind"] == "classifier" and described["init_from"]["path"] == str(trained)


def test_python_api_pretrains_too(corpus: Path, tmp_path: Path) -> None:
    result = grutext.pretrain([corpus], tmp_path / "lm", epochs=1, embed_dim=8, hidden_size=8, vocab_size=200)
    assert result["perplexity"] > 1 and (tmp_path / "lm" / "model.safetensors").is_file()
    with pytest.raises(DataError):
        grutext.pretrain([tmp_path / "missing.txt"], tmp_path / "x")


def test_self_training_adds_what_the_last_round_is_surest_of(corpus: Path, split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = ["train", str(split_dir), "-o", str(out), *TINY, "--unlabeled", str(corpus), "--self-training", "2"]
    result = CliRunner().invoke(cli, [*args, "--pseudo-share", "0.5,0.25", "--pretrain-minutes", "0.1"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    rounds = config["self_training"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and rounds[0]["pseudo_labelled"] == 0
    assert 200 <= rounds[1]["pseudo_labelled"] <= 300 and rounds[1]["pseudo_labelled"] % 2 == 0  # as many per class
    assert 100 <= rounds[2]["pseudo_labelled"] <= 150 and rounds[2]["pseudo_labelled"] % 2 == 0  # round 2's share
    assert config["self_training"]["pseudo_share"] == [0.5, 0.25]
    kept = config["self_training"]["kept"]
    assert kept_round(rounds)["round"] == kept and rounds[kept]["validation_n"] == 40
    assert config["data"].get("pseudo_labelled", 0) == rounds[kept]["pseudo_labelled"]
    assert not list(tmp_path.glob(".m.unlabeled*"))
    # the log names each stage, then the kept round and the output (not the stage's folder) last
    log = result.stderr.splitlines()
    added = f"--unlabeled stage: round 2 of 2, {rounds[2]['pseudo_labelled']:,} pseudo-labelled texts added"
    assert "--unlabeled stage: language model" in log and "--unlabeled stage: round 0 of 2" in log and added in log
    assert log[-2].endswith(f"kept round {kept}") and log[-1] == f"saved {out}: round {kept}'s classifier"
    # info tells both stages: the language model it started from and the rounds, with the one kept
    shown = CliRunner().invoke(cli, ["info", "-m", str(out)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stderr.replace("│", " ").split())
    assert "started from language model, its own first stage (--unlabeled)" in text
    assert f"({rounds[2]['pseudo_labelled']:,} pseudo-labels); kept round {kept}" in text
    assert f"train {config['data']['sizes']['train']:,}" in text
    described = json.loads(CliRunner().invoke(cli, ["info", "-m", str(out), "--json"]).stdout)
    assert described["self_training"] == config["self_training"] and described["init_from"]["kind"] == "language_model"


def test_unlabeled_language_model_passes_follow_its_start() -> None:
    """30 passes from a fresh word table, 10 from --vectors (more wear the vectors away), --pretrain-epochs wins."""
    assert pretrain_settings(TrainConfig()).epochs == 30
    assert pretrain_settings(TrainConfig(vectors="glove.txt")).epochs == 10
    assert pretrain_settings(TrainConfig(vectors="glove.txt", pretrain_epochs=7)).epochs == 7
    with pytest.raises(ConfigError, match=r"train\.pretrain_epochs"):
        TrainConfig(pretrain_epochs=0)


def test_unlabeled_interrupted_in_a_round_resumes_to_the_same_model(
    corpus: Path, split_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C in round 1 of an --unlabeled run, then --resume: the language model and round 0 are read, not
    trained again, round 1 goes on from its step, and the kept model is the uninterrupted run's, bit for bit."""
    options = {
        "embed_dim": 16, "hidden_size": 16, "vocab_size": 200, "epochs": 2, "batch_size": 16, "lr": 0.01,
        "unlabeled": [str(corpus)], "self_training": 1, "pseudo_share": 0.5, "pretrain_epochs": 3,
    }  # fmt: skip
    grutext.train(split_dir, tmp_path / "straight", **options)
    seen: list[object] = []

    def stop(event: object) -> None:
        seen.append(event)
        in_round_1 = any(isinstance(e, StageStarted) and e.stage == "round 1 of 1" for e in seen)
        if in_round_1 and isinstance(event, StepDone) and event.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="--resume"):
        grutext.train(split_dir, tmp_path / "cut", on_event=stop, **options)
    assert not (tmp_path / "cut").exists() and (tmp_path / ".cut.unlabeled" / "round-0" / "config.json").is_file()
    seen.clear()
    grutext.train(split_dir, tmp_path / "cut", resume=True, on_event=seen.append, **options)
    stages = [(e.stage, e.reused) for e in seen if isinstance(e, StageStarted)]
    assert stages == [("language model", True), ("round 0 of 1", True), ("round 1 of 1", False)]
    assert [e.kept for e in seen if isinstance(e, RoundKept)] == [
        json.loads((tmp_path / "cut" / "config.json").read_text())["self_training"]["kept"]
    ]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / ".cut.unlabeled").exists()


@pytest.mark.parametrize(
    ("scores", "n", "kept"),
    [
        ([0.80, 0.86, 0.84], 50, 2),  # a lead of one text in 50 is noise: the last round
        ([0.80, 0.94, 0.80], 50, 1),  # 14 points on 50 texts is more than two standard errors (about 13)
        ([0.80, 0.87, 0.84], 2000, 1),  # 3 points on 2,000 texts is too (two standard errors: 2.3)
        ([0.90, 0.80], 0, 1),  # no count of validation texts (an older record): the last round
        ([0.70], 50, 0),
    ],
)
def test_the_last_round_is_kept_unless_an_earlier_one_is_clearly_better(scores: list[float], n: int, kept: int) -> None:
    rounds = [{"round": i, "validation": s, "validation_n": n} for i, s in enumerate(scores)]
    assert kept_round(rounds)["round"] == kept


def test_pseudo_labels_take_the_surest_texts_of_each_class(trained: Path) -> None:
    from grutext.semisupervised import pseudo_labels

    pool = ["superb wonderful brilliant", "awful dreadful tedious", "the film was", "a cast and plot", "superb"]
    picked = pseudo_labels(trained, pool, share=0.4)  # 0.4 x 5 texts / 2 classes: one of each class
    from grutext.engine import load_engine

    probs = load_engine(trained).predict_proba(pool)  # the engine it uses: near 1, engines differ in the last digit
    best = {label: max(range(len(pool)), key=lambda i: float(probs[i][c])) for c, label in enumerate(["neg", "pos"])}
    assert sorted(picked) == sorted((pool[i], [label]) for label, i in best.items())


def test_pretrain_streams_a_corpus_larger_than_memory_would_hold(corpus: Path, tmp_path: Path) -> None:
    """--streaming reads the corpus pass after pass: the same kind of checkpoint, learning as the in-memory
    run does, and a resumed run goes on in the pass it stopped in."""
    args = [str(corpus), *SMALL, "--epochs", "3", "--streaming", "--shuffle-buffer", "64", "--tokenizer-sample", "300"]
    result = CliRunner().invoke(cli, ["pretrain", *args, "-o", str(tmp_path / "lm"), "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config["corpus"]["streaming"] is True
    history = json.loads(result.stdout)["history"]
    assert history[-1]["val_score"] < history[0]["val_score"]

    def stop(event: object) -> None:
        if isinstance(event, StepDone) and event.global_step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = PretrainConfig(epochs=2, streaming=True, shuffle_buffer=64, tokenizer_sample=300, device="cpu")
    with pytest.raises(Interrupted, match="--resume"):
        pretrain([str(corpus)], TOK, MODEL, cfg, tmp_path / "cut", on_event=stop)
    state = json.loads((tmp_path / "cut" / "trainer_state" / "state.json").read_text())["loop"]
    assert state["data_position"] > 0
    resumed = pretrain([str(corpus)], TOK, MODEL, cfg, tmp_path / "cut", resume=True)
    assert resumed.metrics["epochs_run"] == 2 and resumed.metrics["perplexity"] > 1


def test_pretrain_starts_from_word_vectors(corpus: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    words = sorted({w for line in corpus_lines(50) for w in line.split()})
    vectors.write_text(
        "".join(
            f"{w} " + " ".join(f"{(i * 7 + j) % 11 / 10:.1f}" for j in range(8)) + "\n" for i, w in enumerate(words)
        )
    )
    out = tmp_path / "lm"
    result = CliRunner().invoke(
        cli, ["pretrain", str(corpus), "-o", str(out), "--vectors", str(vectors), "--epochs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "vectors:" in result.stderr and "of training tokens" in result.stderr
    assert json.loads((out / "config.json").read_text())["model"]["embed_dim"] == 8


def test_pseudo_share_is_one_share_or_one_per_round() -> None:
    """ "A,B": round 1 adds A, round 2 and later B; a number (the Python API's) is one share for every round."""
    cfg = TrainConfig(pseudo_share="0.2,0.4")
    assert [cfg.round_share(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.4]
    assert TrainConfig(pseudo_share=0.5).pseudo_share == "0.5"  # type: ignore[arg-type]
    assert [TrainConfig(pseudo_share=1).round_share(n) for n in (1, 5)] == [1.0, 1.0]  # type: ignore[arg-type]
    for bad in ("0", "0.2,", "1.5", "a", "0.2,nan", ""):
        with pytest.raises(ConfigError, match="one per round"):
            TrainConfig(pseudo_share=bad)


@pytest.mark.parametrize("bad", ["0.2,,0.4", "2", "-0.1"])
def test_a_malformed_pseudo_share_is_a_usage_error(bad: str, split_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", str(split_dir), "-o", str(tmp_path / "m"), "--pseudo-share", bad])
    assert result.exit_code == 2 and "--pseudo-share" in result.stderr and "e.g. 0.2,0.4" in result.stderr
    assert not (tmp_path / "m").exists()
