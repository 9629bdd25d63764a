"""`grutext info` and `grutext export`: what a checkpoint is, and its model as ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from grutext.cli.common import cli, handle_errors, stderr_console


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.option(
    "--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Model format to write."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a copy here (the checkpoint always gets its model.onnx).",
)
@handle_errors
def export(model_dir: Path, fmt: str, output: Path | None) -> None:
    """Write the checkpoint's model as ONNX (model.onnx in the checkpoint), so predict runs without torch.

    The graph takes token ids and lengths and gives probabilities; the tokenizer stays tokenizer.json.

    \b
    Examples:
      grutext export --model models/bbc
      grutext export -m models/bbc --output deploy/bbc.onnx
    """
    from grutext.artifacts import read_meta
    from grutext.onnx_export import export as run_export

    meta = read_meta(model_dir)
    click.echo(f"wrote {meta.path / 'model.onnx'}", err=True)
    path = run_export(meta, output)
    if output is not None:
        click.echo(f"wrote {path}", err=True)


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint to compress."
)
@click.option(
    "--output", "-o", required=True, type=click.Path(path_type=Path), help="Directory for the compressed checkpoint."
)
@click.option(
    "--dsub",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Numbers per one-byte code in the word and n-gram tables: larger is smaller and coarser.",
)
@click.option(
    "--keep-rows",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Fraction of the n-gram table's rows kept, those adding the largest logits; the others read as zeros "
    "(the word table is never pruned).",
)
@click.option(
    "--dense",
    type=click.Choice(["int8", "float16"]),
    default="int8",
    show_default=True,
    help="How the GRU's and classifiers' matrices are stored (int8: a scale a row).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@handle_errors
def compress(
    model_dir: Path, output: Path, dsub: int, keep_rows: float, dense: str, seed: int, overwrite: bool
) -> None:
    """Write a compressed copy of a checkpoint: tables product-quantized, other matrices in int8.

    Both engines, serve and the Python API run it as they run the original (the weights are rebuilt when it
    loads). Check what it costs with `grutext evaluate` on both.

    \b
    Examples:
      grutext compress -m models/sst2 -o models/sst2-small
      grutext compress -m models/bbc -o models/bbc-small --dsub 4 --keep-rows 0.5
    """
    from grutext.artifacts import checkpoint_bytes, read_meta
    from grutext.checkpoint import save_compressed
    from grutext.compress import Settings

    meta = read_meta(model_dir)
    path = save_compressed(meta, output, Settings(dsub=dsub, keep=keep_rows, dense=dense, seed=seed), overwrite)
    before, after = sum(checkpoint_bytes(meta.path).values()), sum(checkpoint_bytes(path).values())
    click.echo(f"wrote {path}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({before / after:.1f}x smaller)", err=True)


def _size(files: dict[str, int]) -> str:
    big = sorted(files.items(), key=lambda item: -item[1])[:3]
    return f"{sum(files.values()) / 1e6:.2f} MB (" + ", ".join(f"{n} {b / 1e6:.2f} MB" for n, b in big) + ")"


def _compression(spec: dict[str, Any], width: int) -> str:
    parts = []
    if spec.get("folded_bigram_dim"):
        parts.append(f"bigram head folded into its table ({spec['folded_bigram_dim']} numbers a row to {width})")
    for key, entry in spec["tensors"].items():
        if entry["kind"] == "pq":
            kept = f", {entry['kept']:,} of {entry['rows']:,} rows kept" if entry["kept"] < entry["rows"] else ""
            parts.append(f"{key.split('.')[0]} in {entry['dim'] // entry['dsub']} one-byte codes a row{kept}")
    if any(entry["kind"] == "int8" for entry in spec["tensors"].values()):
        parts.append("other matrices int8, a scale a row")
    if any(entry["kind"] == "float16" for entry in spec["tensors"].values()):
        parts.append("other matrices float16")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------- serve


@cli.command()
@click.option(
    "--model", "-m", "model_dir", required=True, type=click.Path(path_type=Path), help="Checkpoint directory."
)
@click.option("--json", "as_json", is_flag=True, help="Print the description as one JSON object on stdout.")
@handle_errors
def info(model_dir: Path, as_json: bool) -> None:
    """Describe a checkpoint: labels, size, tokenizer, architecture, training data and scores.

    \b
    Examples:
      grutext info --model models/bbc
      grutext info -m models/bbc --json | jq .test
    """
    from grutext.artifacts import LANGUAGE_MODEL, read_config
    from grutext.checkpoint import describe, load

    if read_config(model_dir)[1].get("kind") == LANGUAGE_MODEL:
        _language_model_info(model_dir, as_json)
        return
    ckpt = load(model_dir)  # the weights too: info is also how a user checks a copied checkpoint is whole
    described = describe(ckpt)
    if as_json:
        click.echo(json.dumps(described, ensure_ascii=False))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(str(ckpt.path)), show_header=False)
    m = described["model"]
    cell = {"gru": "GRU", "cho2014": "GRU (Cho et al. 2014)", "lstm": "LSTM"}.get(m["cell"], m["cell"])
    arch = (
        f"embedding {m['embed_dim']} -> {'bi' if m['bidirectional'] else 'uni'}directional {cell} "
        f"{m['layers']}x{m['hidden_size']} -> {m['pooling']} pooling"
        f"{' (+ pooled embeddings)' if m.get('embedding_skip') else ''} -> linear {len(ckpt.labels)}"
        + (f", averaged with a bigram head ({m['bigram_buckets']:,} buckets" if m.get("bigram_buckets") else "")
        + (
            f", character {m['char_ngrams']}-grams"
            if m.get("bigram_buckets") and m.get("char_ngrams", "0") != "0"
            else ""
        )
        + (")" if m.get("bigram_buckets") else "")
    )
    t = described["tokenizer"]
    rows = [
        ("labels", ", ".join(ckpt.labels)),
        ("parameters", f"{described['parameters']:,}"),
        ("architecture", arch),
        ("dropout", str(m["dropout"])),
        (
            "tokenizer",
            f"{t['kind']}, {described['shape']['vocab_size']} tokens, max {t['max_length']} ({t['truncation']}), "
            f"{'lowercased' if t['lowercase'] else 'cased'}",
        ),
        ("training data", _training_data(described["data"])),
        ("size", _size(described["bytes"])),
    ]
    if described["init_from"]:
        rows.append(("started from", _started_from(described["init_from"])))
    if described["self_training"]:
        rows.append(("self-training", _self_training(described["self_training"])))
    if described["compression"]:
        rows.append(("compression", _compression(described["compression"], m["bigram_dim"])))
    if ckpt.shape.multi_label:
        d = described["decision"] or {}
        when = f"threshold {d['threshold']}" if d.get("threshold") is not None else "per-label thresholds"
        rows.append(
            ("multi-label", f"sigmoid outputs, {when}" + (", at least one label" if d.get("at_least_one") else ""))
        )
    calibration = described["calibration"]
    if calibration.get("validation"):
        v = calibration["validation"]
        rows.append(
            (
                "calibration",
                f"temperature {calibration['temperature']:g} (validation ECE {v['ece_before']:.4f} -> "
                f"{v['ece_after']:.4f}, NLL {v['nll_before']:.4f} -> {v['nll_after']:.4f})",
            )
        )
    for split, scores in described["scores"].items():
        rows.append(
            (
                f"{split} scores",
                ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()),
            )
        )
    if described["train_seconds"] is not None:
        rows.append(
            (
                "trained",
                f"{described['train_seconds']}s, best epoch {described['best_epoch']}, "
                f"grutext {described['grutext_version']}",
            )
        )
    for key, value in rows:
        table.add_row(key, escape(value))
    stderr_console().print(table)


def _training_data(data: dict[str, Any]) -> str:
    """Where the data came from and how many texts each split had, the pseudo-labelled among train's."""
    sizes = ", ".join(f"{split} {n:,}" for split, n in (data.get("sizes") or {}).items())
    pseudo = data.get("pseudo_labelled")
    return (
        f"{data.get('source', '?')}"
        + (f": {sizes}" if sizes else "")
        + (f" (train: {pseudo:,} pseudo-labelled)" if pseudo else "")
    )


def _started_from(start: dict[str, Any]) -> str:
    """What the run began with: a language model (its own first stage, or one named by --init-from) or a
    classifier it went on training."""
    from grutext.artifacts import LANGUAGE_MODEL

    if start.get("kind") != LANGUAGE_MODEL:
        return f"classifier {start.get('path')}" + (
            f" (trained on {start['data']['source']})" if start.get("data", {}).get("source") else ""
        )
    corpus, metrics = start.get("corpus", {}), start.get("metrics", {})
    where = start.get("path") or "its own first stage (--unlabeled)"
    out = f"language model, {where}"
    if corpus:
        out += f", on {_corpus(corpus)}"
    if metrics.get("perplexity") is not None:
        out += f"; held-out perplexity {metrics['perplexity']}, {metrics.get('train_seconds')}s"
    return out


def _corpus(corpus: dict[str, Any]) -> str:
    """A language model's corpus as both info tables show it: its sources, texts and tokens."""
    return (
        f"{', '.join(corpus.get('sources', []))}: {corpus.get('texts', 0):,} texts, {corpus.get('tokens', 0):,} tokens"
    )


def _self_training(section: dict[str, Any]) -> str:
    """Each round's validation score (the run's metric) and pseudo-labels, and the round kept."""
    rounds = section.get("rounds", [])
    by_round = ", ".join(
        f"{r['validation']:.4f}" + (f" ({r['pseudo_labelled']:,} pseudo-labels)" if r["pseudo_labelled"] else "")
        for r in rounds
    )
    n = f" on {rounds[0]['validation_n']:,} texts" if rounds and rounds[0].get("validation_n") else ""
    return f"validation{n} by round: {by_round}; kept round {section.get('kept')}"


def _language_model_info(model_dir: Path, as_json: bool) -> None:
    """What `grutext pretrain` wrote: the encoder it trained, its corpus and its held-out perplexity."""
    from rich.markup import escape
    from rich.table import Table

    from grutext.artifacts import describe_language_model
    from grutext.checkpoint import load_language_model

    meta, _ = load_language_model(model_dir)  # the weights too, to check a copy is whole
    described = describe_language_model(meta)
    if as_json:
        click.echo(json.dumps(described, ensure_ascii=False))
        return
    m, corpus, t = described["model"], described["corpus"], described["tokenizer"]
    rows = [
        ("kind", "language model (grutext pretrain): start a classifier from it with train --init-from"),
        ("parameters", f"{described['parameters']:,}"),
        (
            "encoder",
            f"embedding {m['embed_dim']} -> {'bi' if m['bidirectional'] else 'uni'}directional {m['cell']} "
            f"{m['layers']}x{m['hidden_size']}, next-token and previous-token softmax over {described['vocab_size']:,}",
        ),
        ("tokenizer", f"{t['kind']}, {described['vocab_size']} tokens, {'lowercased' if t['lowercase'] else 'cased'}"),
        ("corpus", f"{_corpus(corpus)}, {corpus.get('held_out_texts', 0):,} held out"),
        ("held-out perplexity", f"{described['perplexity']}"),
        (
            "trained",
            f"{described['train_seconds']}s, best epoch {described['best_epoch']}, "
            f"{described['tokens_per_s']:,.0f} tokens/s",
        ),
    ]
    table = Table(title=escape(str(meta.path)), show_header=False)
    for key, value in rows:
        table.add_row(key, escape(value))
    stderr_console().print(table)
