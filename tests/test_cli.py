"""Every command through click's CliRunner: exit codes, stdout/stderr separation, output shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from grutext.cli import cli
from tests.conftest import TINY, sentiment_rows, write_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args: str, input: str | bytes | None = None) -> object:
    return CliRunner().invoke(cli, list(args), input=input)


def test_every_command_has_help_with_examples_and_is_in_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        result = run(name, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output
        assert f"grutext {name}" in readme, f"README does not show `grutext {name}`"
        for param in command.params:
            assert param.help or param.param_type_name == "argument", f"{name} {param.name} has no help"


def test_every_option_is_documented_in_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("--") and flag not in ("--help",):
                    assert f"`{flag}" in readme or f"{flag}`" in readme or f"{flag}/" in readme, (
                        f"grutext {name} {flag} is not in README.md"
                    )


def test_train_reports_on_stderr_and_writes_checkpoint(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = run("train", str(split_dir), "--output", str(out), *TINY, "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "labels.json",
        "metrics.json",
        "model.onnx",
        "model.safetensors",
        "tokenizer.json",
    ]
    metrics = json.loads(result.stdout)  # stdout holds only the JSON object
    assert metrics["path"] == str(out) and 0 <= metrics["test"]["accuracy"] <= 1
    assert "epoch 1:" in result.stderr and f"saved {out}" in result.stderr


def test_bigram_head_trains_and_predicts_alike_on_both_engines(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = run("train", str(split_dir), "-o", str(out), *TINY, "--bigrams", "101", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]["accuracy"] >= 0.8
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["bigram_buckets"] == 101 and config["model"]["bigram_dim"] == 32
    text = "a wonderful superb film\nawful and dull\nthe\n"
    predict = ("predict", "-m", str(out), "--format", "tsv", "--engine")
    lines = {engine: run(*predict, engine, input=text).stdout for engine in ("torch", "onnx")}
    assert lines["torch"] == lines["onnx"] and lines["torch"].count("\n") == 3
    assert json.loads(run("info", "-m", str(out), "--json").stdout)["model"]["bigram_buckets"] == 101
    assert "bigram" in run("info", "-m", str(out)).stderr


def test_a_checkpoint_from_before_the_bigram_head_loads_without_one(
    trained: Path, split_dir: Path, tmp_path: Path
) -> None:
    assert json.loads((trained / "config.json").read_text())["model"]["bigram_buckets"] == 50_000  # the default
    old = tmp_path / "old"
    result = run("train", str(split_dir), "-o", str(old), *TINY, "--bigrams", "0")
    assert result.exit_code == 0, result.output
    config = json.loads((old / "config.json").read_text())
    for key in ("bigram_buckets", "bigram_dim"):
        del config["model"][key]
    (old / "config.json").write_text(json.dumps(config))
    result = run("predict", "-m", str(old), "--engine", "torch", input="a wonderful film\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[0] in ("pos", "neg")


def test_unknown_words_count_through_their_character_ngrams_on_both_engines(trained_chars: Path) -> None:
    trained = trained_chars
    assert json.loads((trained / "config.json").read_text())["model"]["char_ngrams"] == "2-4"
    # two words the vocabulary lacks: the same [UNK] id, told apart by their n-grams alone
    text = "superbbbly\nqqxqzv\n"
    predict = ("predict", "-m", str(trained), "--format", "jsonl", "--engine")
    out = {
        engine: [json.loads(line) for line in run(*predict, engine, input=text).stdout.splitlines()]
        for engine in ("torch", "onnx")
    }
    assert [r["probs"] for r in out["torch"]] == [pytest.approx(r["probs"], abs=1e-5) for r in out["onnx"]]
    assert out["torch"][0]["probs"] != pytest.approx(out["torch"][1]["probs"], abs=1e-4)
    assert "character 2-4-grams" in run("info", "-m", str(trained)).stderr


def test_a_checkpoint_from_before_character_ngrams_loads_on_both_engines(split_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    result = run("train", str(split_dir), "-o", str(old), *TINY, "--char-ngrams", "0", "--max-steps", "3")
    assert result.exit_code == 0, result.output
    config = json.loads((old / "config.json").read_text())
    del config["model"]["char_ngrams"]
    (old / "config.json").write_text(json.dumps(config))
    for engine in ("torch", "onnx"):  # the model.onnx written then still matches its checkpoint
        result = run("predict", "-m", str(old), "--engine", engine, input="a wonderful film\n")
        assert result.exit_code == 0, result.output


def test_char_ngrams_the_tokenizer_cannot_give_are_refused(split_dir: Path, tmp_path: Path) -> None:
    for extra in (["--tokenizer", "bpe"], ["--bigrams", "0"]):
        result = run("train", str(split_dir), "-o", str(tmp_path / "m"), *TINY, "--char-ngrams", "2-4", *extra)
        assert result.exit_code == 1 and result.output.count("Error:") == 1 and "--char-ngrams" in result.output
        assert not (tmp_path / "m").exists()


def test_train_refuses_non_empty_output_without_overwrite(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run("train", str(split_dir), "--output", str(out), *TINY)
    assert result.exit_code == 1
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "precious"


def test_max_steps_stops_early(split_dir: Path, tmp_path: Path) -> None:
    result = run("train", str(split_dir), "-o", str(tmp_path / "m"), *TINY, "--max-steps", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stopped"] == "reached --max-steps 2"


@pytest.mark.parametrize(
    "flag",
    [
        ["--epochs", "0"], ["--lr", "-1"], ["--max-length", "0"], ["--dropout", "2"], ["--pooling", "median"],
        ["--word-dropout", "1"], ["--label-smoothing", "0.6"], ["--vectors-std", "0.5"],  # the last without --vectors
        ["--bigrams", "-1"], ["--char-ngrams", "2-x"], ["--char-ngrams", "4-2"],
    ],
)  # fmt: skip
def test_invalid_option_values_are_usage_errors(split_dir: Path, tmp_path: Path, flag: list[str]) -> None:
    result = run("train", str(split_dir), "-o", str(tmp_path / "m"), *flag)
    assert result.exit_code == 2
    assert flag[0] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_evaluate_json_has_the_promised_keys(trained: Path, split_dir: Path) -> None:
    result = run("evaluate", "--model", str(trained), str(split_dir), "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels", "n"):
        assert key in metrics
    assert metrics["split"] == "test" and metrics["n"] == 60
    assert metrics["accuracy"] > 0.9  # the tiny task is learnable


def test_evaluate_tables_go_to_stderr(trained: Path, split_dir: Path) -> None:
    result = run("evaluate", "-m", str(trained), str(split_dir), "--split", "validation")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "macro-F1" in result.stderr and "confusion matrix" in result.stderr and "[validation]" in result.stderr


def test_evaluate_unknown_split_lists_splits(trained: Path, split_dir: Path) -> None:
    result = run("evaluate", "-m", str(trained), str(split_dir), "--split", "dev2")
    assert result.exit_code == 1
    assert "train, validation, test" in result.output


def test_predict_stdin_one_line_per_input_line(predict_args: list[str]) -> None:
    lines = ["a wonderful superb film", "", "awful and boring", "   ", "charming cast"]
    result = run("predict", *predict_args, input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[0] == "pos" and out[2] == "neg"


def test_predict_replaces_invalid_utf8_and_keeps_a_final_unterminated_line(predict_args: list[str]) -> None:
    result = run("predict", *predict_args, input=b"great \xff\xfe film\r\nboring")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 2


def test_predict_formats(predict_args: list[str], tmp_path: Path) -> None:
    texts = tmp_path / "in.txt"
    texts.write_text("wonderful story\nterrible plot\n", encoding="utf-8")
    tsv = run("predict", *predict_args, str(texts), "--format", "tsv").stdout.splitlines()
    assert [line.split("\t")[0] for line in tsv] == ["pos", "neg"]
    assert all(0.5 <= float(line.split("\t")[1]) <= 1 for line in tsv)
    records = [
        json.loads(x)
        for x in run("predict", *predict_args, str(texts), "--format", "jsonl", "--top-k", "2").stdout.splitlines()
    ]
    assert set(records[0]) == {"label", "score", "probs", "top_k"}
    assert abs(sum(records[0]["probs"].values()) - 1) < 1e-4
    assert [t["label"] for t in records[1]["top_k"]] == ["neg", "pos"]
    top2 = run("predict", *predict_args, str(texts), "--top-k", "5").stdout.splitlines()
    assert top2[0].split("\t") == ["pos", "neg"]


def test_predict_reads_csv_and_jsonl_with_text_column(predict_args: list[str], tmp_path: Path) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text('id,body\n1,"wonderful, superb"\n2,"awful\nand dull"\n', encoding="utf-8")
    out = run("predict", *predict_args, str(csv_file), "--text-column", "body")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == ["pos", "neg"]
    jsonl = write_jsonl(tmp_path / "in.jsonl", [{"body": "superb"}, {"body": "tedious"}])
    out = run("predict", *predict_args, str(jsonl), "--text-column", "body")
    assert out.stdout.splitlines() == ["pos", "neg"]
    missing = run("predict", *predict_args, str(csv_file), "--text-column", "nope")
    assert missing.exit_code == 1 and "id, body" in missing.output


def test_predict_reads_a_fasttext_file_as_train_and_evaluate_do(predict_args: list[str], tmp_path: Path) -> None:
    """__label__ prefixes are labels, not words, in every command; a plain .txt file stays plain text."""
    import gzip

    texts = ["wonderful and superb", "awful, tedious", "", "dull __label__pos stays a word"]
    plain = run("predict", *predict_args, "--format", "jsonl", input="\n".join(texts) + "\n").stdout.splitlines()
    labelled = "".join(f"__label__{'pos' if i % 2 else 'neg'} {t}\n" for i, t in enumerate(texts))
    fasttext = tmp_path / "test.txt"
    fasttext.write_text(labelled, encoding="utf-8")
    (tmp_path / "test.txt.gz").write_bytes(gzip.compress(labelled.encode()))
    for path in (fasttext, tmp_path / "test.txt.gz"):
        assert run("predict", *predict_args, str(path), "--format", "jsonl").stdout.splitlines() == plain
    stdin = run("predict", *predict_args, "--input-format", "fasttext", "--format", "jsonl", input=labelled)
    assert stdin.stdout.splitlines() == plain
    as_text = run("predict", *predict_args, "--input-format", "text", str(fasttext), "--format", "jsonl").stdout
    assert as_text.splitlines() != plain  # asked for plain text, the prefixes are words
    words = tmp_path / "words.txt"  # a .txt of texts is not mistaken for fastText's form
    words.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert run("predict", *predict_args, str(words), "--format", "jsonl").stdout.splitlines() == plain


def test_predict_several_files_and_dash(predict_args: list[str], tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("superb\n", encoding="utf-8")
    out = run("predict", *predict_args, str(a), "-", str(a), input="dreadful\n")
    assert out.stdout.splitlines() == ["pos", "neg", "pos"]


@pytest.mark.parametrize("target", ["missing.txt", "."])
def test_predict_bad_input_path(predict_args: list[str], tmp_path: Path, target: str) -> None:
    result = run("predict", *predict_args, str(tmp_path / target))
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and result.output.count("\n") == 1


def test_info_text_and_json(trained: Path) -> None:
    result = run("info", "--model", str(trained), "--json")
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["labels"] == ["neg", "pos"]
    assert described["parameters"] > 0 and described["model"]["hidden_size"] == 16
    assert described["data"]["sizes"] == {"train": 240, "validation": 40, "test": 60}
    text = run("info", "-m", str(trained))
    assert "parameters" in text.stderr and "bidirectional" in text.stderr


def test_missing_checkpoint_is_one_clean_error(tmp_path: Path) -> None:
    result = run("predict", "-m", str(tmp_path / "nope"), input="x\n")
    assert result.exit_code == 1
    assert re.fullmatch(r"Error: no checkpoint at .*grutext train.*\n", result.output)


def test_chinese_end_to_end(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "cn.jsonl", sentiment_rows(200, seed=5, chinese=True))
    out = tmp_path / "cn"
    result = run("train", str(data), "-o", str(out), *TINY, "--epochs", "10", "--patience", "10", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["validation"]["accuracy"] >= 0.9
    pred = run("predict", "-m", str(out), input="房间很好，服务满意\n早餐难吃，很差\n")
    assert pred.stdout.splitlines() == ["pos", "neg"]


def test_predict_reads_parquet_and_the_column_the_model_was_trained_on(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"review": r["text"], "label": r["label"]} for r in sentiment_rows(200, seed=7)]
    data = write_jsonl(tmp_path / "train.jsonl", [{**r, "note": "x"} for r in rows])
    out = tmp_path / "m"
    trained = run("train", str(data), "-o", str(out), *TINY, "--epochs", "10", "--text-column", "review")
    assert trained.exit_code == 0, trained.output
    # Two string columns, neither named `text`: predict reads `review`, the column recorded at training.
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("note,review\nx,superb and wonderful\ny,dreadful and dull\n", encoding="utf-8")
    assert run("predict", "-m", str(out), str(csv_file)).stdout.splitlines() == ["pos", "neg"]
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "review": ["superb and wonderful", "dreadful and dull"]}), table)
    assert run("predict", "-m", str(out), str(table)).stdout.splitlines() == ["pos", "neg"]


def test_patience_counts_the_epochs_without_improvement(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--patience N stops after N worse epochs, not N + 1 (scripted validation scores)."""
    from grutext import task as t

    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9, 0.9, 0.9])

    def scripted(self: t.Task, logits: object, target: object, per_label: bool = False) -> tuple[object, ...]:
        score = next(scores, 0.9)
        metrics = {"accuracy": score, "macro_f1": score, "weighted_f1": score, "n": 1}
        return metrics, 1.0, score

    monkeypatch.setattr(t.Task, "score", scripted)
    result = run("train", str(split_dir), "-o", str(tmp_path / "m"), *TINY, "--epochs", "8", "--patience", "2")
    assert result.exit_code == 0, result.output
    assert "no better validation accuracy for 2 epoch(s); kept epoch 2" in result.stderr
    assert "epoch 4:" in result.stderr and "epoch 5:" not in result.stderr


def test_epoch_lines_show_macro_f1_once(tmp_path: Path) -> None:
    rows = sentiment_rows(160, seed=3)
    rows += [{"text": "a neutral plot summary", "label": "meh"}] * 10  # imbalanced: the epoch is picked by macro-F1
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    result = run("train", str(data), "-o", str(tmp_path / "m"), *TINY, "--epochs", "1")
    assert result.exit_code == 0, result.output
    epoch = next(line for line in result.stderr.splitlines() if line.startswith("epoch 1:"))
    assert epoch.count("macro-F1") == 1 and "macro_f1" not in epoch


@pytest.mark.parametrize(("name", "split"), [("sms_test.csv", "test"), ("reviews.csv", "all")])
def test_evaluate_names_what_a_single_file_serves_as(trained: Path, tmp_path: Path, name: str, split: str) -> None:
    path = tmp_path / name
    path.write_text("text,label\nsuperb film,pos\ndreadful film,neg\n", encoding="utf-8")
    shown = run("evaluate", "-m", str(trained), str(path))
    assert shown.exit_code == 0, shown.output
    assert shown.stderr.startswith(f"{path}: 2 texts") and "[train]" not in shown.stderr
    assert json.loads(run("evaluate", "-m", str(trained), str(path), "--json").stdout)["split"] == split


def test_train_options_are_configs_own_choices_limits_and_defaults() -> None:
    """The CLI restates nothing config owns: every choice list, size limit and default of a train option is the
    config's, so changing one there changes the flag."""
    import dataclasses

    from grutext import config as c
    from grutext.settings import TOKENIZER_OPTIONS

    params = {p.name: p for p in cli.commands["train"].params}  # type: ignore[attr-defined]
    choices = {
        "tokenizer": c.TOKENIZER_KINDS, "truncation": c.TRUNCATIONS, "pooling": c.POOLINGS, "cell": c.CELLS,
        "device": c.DEVICES, "early_stop_metric": c.EARLY_STOP_METRICS, "thresholds": c.THRESHOLD_MODES,
        "backend": c.BACKENDS,
    }  # fmt: skip
    for name, wanted in choices.items():
        assert tuple(params[name].type.choices) == wanted, name
    limits = {"embed_dim": c.MAX_DIM, "hidden_size": c.MAX_DIM, "layers": c.MAX_LAYERS, "bigram_buckets": c.MAX_VOCAB}
    for name, top in limits.items():
        assert params[name].type.max == top, name
    fields = {f.name: f for cls in (c.ModelConfig, c.TrainConfig) for f in dataclasses.fields(cls)}
    fields |= {
        flag: f for f in dataclasses.fields(c.TokenizerConfig) for flag, n in TOKENIZER_OPTIONS.items() if n == f.name
    }
    checked = 0
    for name, param in params.items():
        if name in fields and fields[name].default is not dataclasses.MISSING:
            default = param.default
            if type(default).__name__ == "Sentinel":  # click's "no default": off for a flag, else None
                default = False if getattr(param, "is_flag", False) else None
            assert default == fields[name].default, f"--{name}: {default!r} != {fields[name].default!r}"
            checked += 1
    assert checked >= 30


def test_help_shows_no_machine_paths() -> None:
    for name in cli.commands:  # type: ignore[attr-defined]
        text = run(name, "--help").output
        assert "../" not in text and "/work/" not in text, name


def test_min_steps_raises_the_epochs_and_the_patience_of_a_small_set(split_dir: Path, tmp_path: Path) -> None:
    """240 training texts in batches of 16 make 15 steps an epoch: --min-steps 100 asks for 7 epochs, and the
    patience of 3 in 3 epochs becomes 7 in 7 (the same share of the run)."""
    out = tmp_path / "m"
    result = run("train", str(split_dir), "-o", str(out), *TINY, "--epochs", "3", "--min-steps", "100", "--json")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["train"]
    assert (config["resolved_epochs"], config["resolved_patience"]) == (7, 7)
    assert json.loads(result.stdout)["epochs_run"] == 7
    big = run("train", str(split_dir), "-o", str(tmp_path / "n"), *TINY, "--epochs", "3", "--min-steps", "10")
    assert big.exit_code == 0
    assert json.loads((tmp_path / "n" / "config.json").read_text())["train"]["resolved_epochs"] == 3  # enough already


def test_early_stopping_waits_for_the_minimum_of_steps(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patience stops nothing before --min-steps: a small validation split whose best epoch came first (scripted
    scores) cannot cut the run short. 15 steps an epoch: 40 steps end in epoch 3, where patience 1 then stops."""
    from grutext import task as t

    scores = iter([0.9, 0.5, 0.5, 0.5, 0.5])

    def scripted(self: t.Task, logits: object, target: object, per_label: bool = False) -> tuple[object, ...]:
        score = next(scores, 0.5)
        return {"accuracy": score, "macro_f1": score, "weighted_f1": score, "n": 1}, 1.0, score

    monkeypatch.setattr(t.Task, "score", scripted)
    args = [*TINY, "--epochs", "10", "--patience", "1", "--min-steps", "40", "--json"]
    result = run("train", str(split_dir), "-o", str(tmp_path / "m"), *args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert (metrics["epochs_run"], metrics["best_epoch"]) == (3, 1)  # without the floor: stopped after epoch 2
    assert "no better validation accuracy for 2 epoch(s), held until 40 steps (--min-steps)" in result.stderr


def test_the_default_schedule_reaches_1500_steps_but_asked_for_epochs_are_kept() -> None:
    from grutext.config import TrainConfig

    assert TrainConfig().resolved_schedule(15) == (100, 20)  # 450 texts: 15 steps an epoch
    assert TrainConfig().resolved_schedule(2105) == (15, 3)  # sst2's 67k texts make more steps already
    assert TrainConfig(epochs=3).resolved_schedule(15) == (3, 3)  # --epochs given: kept
    assert TrainConfig(epochs=3, min_steps=60).resolved_schedule(15) == (4, 4)  # both given: the minimum rules
