"""The language-model recipe (`grutext pretrain`): read unlabelled text -> train the tokenizer -> train the
word table and the encoder as forward and backward language models -> save a checkpoint `train --init-from`
starts a classifier from. The same runtime, loop, signals and resume as a classifier run (grutext.loop); only
the batches (windows of the corpus) and the objective (a sampled softmax) are a language model's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from grutext import events
from grutext.backend import describe, make_optimizer, prepare, torch_threads
from grutext.checkpoint import (
    TrainerState,
    check_output_dir,
    read_trainer_state,
    resumable_position,
    save_language_model,
    write_trainer_state,
)
from grutext.config import MAX_LENGTH, ModelConfig, PretrainConfig, TokenizerConfig, to_dict
from grutext.corpus import (
    Corpus,
    CorpusStream,
    LanguageObjective,
    Prepared,
    Scan,
    prepare_memory,
    read_corpus,
    scan_stream,
)
from grutext.errors import ConfigError, DataError
from grutext.lm import LanguageModel
from grutext.loop import LoopState, Plan, StopSignals, Training, clone, fit_or_save, restore
from grutext.pretrained import pretrained_embeddings
from grutext.runtime import Runtime, seed_everything, start
from grutext.tokenizer import configure_truncation, encode, train_tokenizer

UNKNOWN_LIMIT = 0.5  # a corpus whose tokens are mostly [UNK] to its own tokenizer teaches nothing


def pretrain(
    sources: list[str],
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    output: Path,
    *,
    text_column: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[events.Event], None] | None = None,
    corpus: Corpus | None = None,
) -> events.TrainResult:
    """Train a language model on the texts of `sources` (or an already read `corpus`) and write its checkpoint
    to `output`, or continue the interrupted run saved there."""
    emit = on_event or events.silent
    model_cfg = dataclasses.replace(model_cfg, bigram_buckets=0, char_ngrams="0")  # the encoder only
    trainer_state: TrainerState | None = None
    if resume:
        trainer_state = read_trainer_state(output)
        model_cfg = _check_resumable(output, tok_cfg, model_cfg, cfg)
    else:
        check_output_dir(output, overwrite)
        if overwrite and (position := resumable_position(output)) is not None:
            emit(events.DiscardingResumable(output, *position))
    rt = start(cfg.device, cfg.backend)
    emit = rt.emitter(emit)
    seed_everything(cfg.seed)

    began = time.perf_counter()
    corpus, scan = _read(sources, text_column, cfg, rt, emit, corpus)
    tokenizer, model_cfg, table = _tokenizer(corpus, tok_cfg, model_cfg, cfg, rt, output if resume else None, emit)
    vocab = tokenizer.get_vocab_size()
    data = _windows(corpus, scan, sources, text_column, tokenizer, tok_cfg, cfg, rt)
    counts = data.counts
    tokens, unknown = data.tokens, data.unknown
    emit(events.TokenizerTrained(tok_cfg.kind, vocab, time.perf_counter() - began, data.mean_tokens, data.long_share))

    model = prepare(_language_model(model_cfg, vocab, table, counts, tokens), rt.device, rt.backend)
    runner = rt.wrap(model)
    objective = LanguageObjective(model, counts, cfg.samples, data.held_out, rt.device)
    total_steps = int(min(cfg.epochs * data.steps_per_epoch, cfg.max_steps or float("inf")))
    optimizer = make_optimizer(
        model,
        rt.backend,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        total_steps=total_steps,
        warmup=cfg.warmup,
    )
    loop = LoopState(data_fingerprint="" if scan else corpus.fingerprint(), backend=rt.backend)
    best_state = clone(model.state_dict())
    if trainer_state is not None:
        loop, best_state = _restored(trainer_state, loop, model, optimizer, rt, output)
    emit(
        events.ModelBuilt(
            model.num_parameters(), str(rt.device), describe(rt.backend), (loop.epoch, loop.step) if resume else None
        )
    )

    sections = {
        "pretrain": to_dict(cfg),
        "corpus": {
            "sources": corpus.sources, "texts_read": corpus.read, "texts": len(corpus.train),
            "held_out_texts": len(corpus.held_out), "tokens": tokens, "windows": data.windows,
            **({"streaming": True} if scan else {}), "unknown_tokens": round(unknown, 4),
        },
    }  # fmt: skip

    write = _writer(output, model, tokenizer, tok_cfg, sections, rt, resume or overwrite)
    max_seconds = None if cfg.max_minutes is None else cfg.max_minutes * 60
    plan = Plan(cfg.epochs, cfg.patience, cfg.max_steps, cfg.lr, max_seconds)
    with StopSignals() as stop, torch_threads(rt.device, rt.backend):
        training = Training(runner, model, optimizer, data.source, objective, loop, best_state, plan)
        stopped = fit_or_save(training, rt, emit, stop, write)
    metrics = _metrics(loop, objective, stopped)
    path = write(best_state, metrics, None)
    emit(events.Finished(path, loop.best_epoch, stopped, metrics))
    rt.close()
    return events.TrainResult(path, metrics, [events.EpochDone(**h) for h in loop.history])


def _windows(
    corpus: Corpus,
    scan: Scan | None,
    sources: list[str],
    text_column: str | None,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    cfg: PretrainConfig,
    rt: Runtime,
) -> Prepared:
    """The corpus encoded whole (a long text is read in windows, all of it) and cut into training windows, in
    memory or as a stream; refused when the tokenizer knows too little of it."""
    whole = dataclasses.replace(tok_cfg, max_length=MAX_LENGTH)

    def encode_all(texts: list[str]) -> list[list[int]]:
        configure_truncation(tokenizer, whole)
        try:
            return encode(tokenizer, texts, whole)
        finally:
            configure_truncation(tokenizer, tok_cfg)

    vocab = tokenizer.get_vocab_size()
    if scan is None:
        data = prepare_memory(
            corpus, encode_all, vocab, tok_cfg.max_length, cfg.window, cfg.batch_size, cfg.seed, rt.rank, rt.world,
            cfg.max_steps,
        )  # fmt: skip
    else:
        data = _prepare_stream(scan, sources, text_column, encode_all, vocab, tok_cfg, cfg, rt)
    if data.tokens == 0 or data.unknown > UNKNOWN_LIMIT:
        raise DataError(
            f"{', '.join(corpus.sources)}: {data.unknown:.0%} of the corpus's {data.tokens} tokens are unknown to the "
            "tokenizer trained on it; it holds too little text that repeats (every word needs two occurrences), or "
            "no words"
        )
    return data


def _writer(
    output: Path,
    model: Any,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    sections: dict[str, Any],
    rt: Runtime,
    overwrite: bool,
) -> Callable[[dict[str, torch.Tensor], dict[str, Any], TrainerState | None], Path]:
    """How the loop saves: these weights, metrics and (when interrupted) the trainer's state, by the leader
    alone, the other ranks waiting at a barrier."""

    def write(weights: dict[str, torch.Tensor], metrics: dict[str, Any], state: TrainerState | None) -> Path:
        model.load_state_dict(weights)
        if not rt.leader:
            assert rt.group is not None
            rt.group.barrier()
            return output
        path = save_language_model(
            output,
            model=model,
            tokenizer=tokenizer,
            tokenizer_config=tok_cfg,
            sections=sections,
            metrics=metrics,
            overwrite=overwrite,
            extra=(lambda root: write_trainer_state(root, state)) if state is not None else None,
        )
        if rt.group is not None:
            rt.group.barrier()
        return path

    return write


def _read(
    sources: list[str],
    text_column: str | None,
    cfg: PretrainConfig,
    rt: Runtime,
    emit: Callable[[events.Event], None],
    corpus: Corpus | None,
) -> tuple[Corpus, Scan | None]:
    """The corpus: read into memory (or the one given), or, streaming, one scan by the leader for the
    tokenizer's sample and the held-out texts, shared with the other ranks."""
    if not cfg.streaming:
        corpus = corpus or read_corpus(sources, text_column, cfg.held_out, cfg.max_held_out)
        emit(events.CorpusRead(corpus.sources, corpus.read, len(corpus.train), len(corpus.held_out)))
        return corpus, None
    scan: Scan | None = None
    if rt.leader:
        scan = scan_stream(sources, text_column, cfg.held_out, cfg.max_held_out, cfg.tokenizer_sample)
    if rt.group is not None:
        scan = rt.group.broadcast(scan)
    assert scan is not None
    corpus = Corpus(scan.sample, scan.held_out, list(sources), scan.read)
    emit(events.CorpusRead(corpus.sources, scan.read, scan.texts, len(scan.held_out)))
    return corpus, scan


def _language_model(
    model_cfg: ModelConfig, vocab: int, table: npt.NDArray[np.float32] | None, counts: Any, tokens: int
) -> LanguageModel:
    """A new language model: its table from the vectors where given, and each output word starting at its own
    frequency, as a unigram model would (the first steps need not spend themselves learning it)."""
    model = LanguageModel(model_cfg, vocab)
    with torch.no_grad():
        if table is not None:
            model.embedding.weight.copy_(torch.from_numpy(table))
        model.output_bias.copy_(torch.log(torch.as_tensor(counts, dtype=torch.float32) + 1.0) - np.log(tokens))
    return model


def _restored(
    state: TrainerState, loop: LoopState, model: Any, optimizer: Any, rt: Runtime, output: Path
) -> tuple[LoopState, dict[str, torch.Tensor]]:
    """An interrupted run's loop and weights, refused when the corpus changed since."""
    if state.loop.get("data_fingerprint") != loop.data_fingerprint:
        raise ConfigError(
            f"cannot resume {output}: the corpus changed since it was saved; restore it to resume, or start a "
            "new run (another --output, or --overwrite)"
        )
    return restore(state, model, optimizer, rt.device, rt.group)


def _metrics(loop: LoopState, objective: LanguageObjective, stopped: str) -> dict[str, Any]:
    """metrics.json: the kept epoch's held-out perplexity, the time and speed, the history."""
    seconds = sum(h["seconds"] for h in loop.history)
    best = loop.history[loop.best_epoch - 1] if loop.best_epoch else {"val_score": float("nan")}
    return {
        "perplexity": round(best["val_score"], 3),  # the held-out perplexity of the kept epoch
        "held_out_tokens": sum(len(r) for r in objective.held_out),
        "best_epoch": loop.best_epoch,
        "epochs_run": len(loop.history),
        "stopped": stopped,
        "train_seconds": round(seconds, 2),
        "tokens_per_s": round(sum(h["tokens_per_s"] * h["seconds"] for h in loop.history) / max(seconds, 1e-9), 1),
        "history": loop.history,
    }


def _prepare_stream(
    scan: Scan,
    sources: list[str],
    text_column: str | None,
    encode_all: Callable[[list[str]], list[list[int]]],
    vocab: int,
    tok_cfg: TokenizerConfig,
    cfg: PretrainConfig,
    rt: Runtime,
) -> Prepared:
    """A streamed corpus: its sample encoded (the unigram counts, the windows per text), its held-out texts in
    memory, and the batches read pass after pass."""
    sample = prepare_memory(
        Corpus(scan.sample, scan.held_out, sources, scan.read), encode_all, vocab, tok_cfg.max_length, cfg.window,
        cfg.batch_size, cfg.seed, 0, 1, None,
    )  # fmt: skip
    per_text = sample.windows / max(len(scan.sample), 1)
    steps = max(1, round(scan.texts * per_text / (cfg.batch_size * rt.world)))
    stream = CorpusStream(
        sources, text_column, encode_all, cfg.window, cfg.batch_size, cfg.seed, cfg.held_out, cfg.shuffle_buffer,
        steps, rt.rank, rt.world, rt.group,
    )  # fmt: skip
    return dataclasses.replace(sample, source=stream, steps_per_epoch=steps)


def _tokenizer(
    corpus: Corpus,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    rt: Runtime,
    resumed: Path | None,
    emit: Callable[[events.Event], None],
) -> tuple[Tokenizer, ModelConfig, np.ndarray[Any, Any] | None]:
    """The corpus's tokenizer (a resumed run's saved one) and the embedding size, with the starting table where
    --vectors gives one. Under torchrun rank 0 trains it and every other rank receives it."""
    if resumed is not None:
        from grutext.artifacts import read_language_model

        saved = read_language_model(resumed)
        return saved.tokenizer, saved.model_config, None
    table = None
    if rt.leader:
        tokenizer = train_tokenizer(corpus.train, tok_cfg)
        if cfg.vectors is not None:
            pretrained = pretrained_embeddings(
                cfg.vectors, tokenizer, tok_cfg, corpus.train, cfg.seed, model_cfg.embed_dim, cfg.vectors_std
            )
            tokenizer, table = pretrained.tokenizer, pretrained.weights
            model_cfg = dataclasses.replace(model_cfg, embed_dim=pretrained.summary["dim"])
            sample = encode(tokenizer, corpus.train[:2000], tok_cfg)
            emit(events.VectorsLoaded({**pretrained.summary, "token_coverage": pretrained.token_coverage(sample)}))
    model_cfg = dataclasses.replace(model_cfg, embed_dim=model_cfg.embedding_size)
    if rt.group is not None:
        shared = rt.group.broadcast((tokenizer.to_str(), model_cfg.embed_dim, table) if rt.leader else None)
        if not rt.leader:
            tokenizer = Tokenizer.from_str(shared[0])
            configure_truncation(tokenizer, tok_cfg)
            model_cfg = dataclasses.replace(model_cfg, embed_dim=shared[1])
            table = shared[2]
    return tokenizer, model_cfg, table


def _check_resumable(
    output: Path, tok_cfg: TokenizerConfig, model_cfg: ModelConfig, cfg: PretrainConfig
) -> ModelConfig:
    """The interrupted run's model settings (its embedding size where these leave it to the default); refuses
    settings that differ from that run's."""
    from grutext.artifacts import read_json

    saved = read_json(output / "config.json", "config")
    if model_cfg.embed_dim is None:
        model_cfg = dataclasses.replace(model_cfg, embed_dim=saved.get("model", {}).get("embed_dim"))
    current = {"tokenizer": to_dict(tok_cfg), "model": to_dict(model_cfg), "pretrain": to_dict(cfg)}
    differences = [
        f"{key}: {saved.get(section, {}).get(key)!r} -> {value!r}"
        for section, values in current.items()
        for key, value in values.items()
        if key != "device" and saved.get(section, {}).get(key) != value
    ]
    if differences:
        raise ConfigError(
            f"cannot resume {output}: settings differ from the interrupted run ({'; '.join(differences)}); resume "
            "with the original settings, or start a new run (another --output, or --overwrite)"
        )
    return model_cfg
