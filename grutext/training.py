"""The classifier recipe: read data -> train tokenizer -> build model -> the loop -> score -> save.

Data held in memory and data streamed differ only in where they come from (grutext.sources.read_memory,
grutext.stream_data.read_stream); from the tokenizer on, both go through this one recipe and grutext.loop's one
loop. Progress is reported through `on_event` callbacks (grutext.events); this module never prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from grutext.artifacts import read_meta
from grutext.backend import describe, make_optimizer, prepare, torch_threads
from grutext.checkpoint import (
    TrainerState,
    check_output_dir,
    read_trainer_state,
    resumable_position,
    save,
    write_trainer_state,
)
from grutext.config import DataShape, ModelConfig, TokenizerConfig, TrainConfig, to_dict
from grutext.data import load_labelled
from grutext.errors import ConfigError, GrutextError, UsageError
from grutext.events import (
    DiscardingResumable,
    EpochDone,
    Event,
    Finished,
    ModelBuilt,
    TokenizerTrained,
    TrainResult,
    VectorsLoaded,
    silent,
)
from grutext.loop import LoopState, Plan, StopSignals, Training, clone, fit_or_save, restore
from grutext.model import GRUClassifier
from grutext.pretrained import Pretrained, pretrained_embeddings
from grutext.runtime import Runtime, seed_everything, start
from grutext.settings import DataSpec, resumed_settings
from grutext.sources import RunData, read_memory
from grutext.task import ClassifierObjective, Task, infer_all
from grutext.tokenizer import configure_truncation, encode_inputs, train_tokenizer
from grutext.warmstart import Start, check_fit, load_into, open_start, settle


def train(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    output: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Train a classifier on `spec` and write the checkpoint to `output` (or continue an interrupted run): from
    scratch, from the checkpoint --init-from names, or (--unlabeled) from a language model pretrained first on the
    unlabelled texts and the training texts, then trained again on what it labels of them (grutext.semisupervised)."""
    if cfg.unlabeled:
        from grutext.semisupervised import train_with_unlabeled

        return train_with_unlabeled(
            spec, tok_cfg, model_cfg, cfg, output, train_from, overwrite=overwrite, resume=resume, on_event=on_event
        )
    if cfg.init_from and cfg.vectors:
        raise UsageError(
            f"--init-from {cfg.init_from} brings its own word table, which --vectors would replace; drop --vectors "
            "(a language model can start from them: grutext pretrain --vectors)"
        )
    return train_from(
        spec, tok_cfg, model_cfg, cfg, output, open_start(cfg.init_from) if cfg.init_from else None,
        overwrite=overwrite, resume=resume, on_event=on_event,
    )  # fmt: skip


def train_from(
    spec: DataSpec,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    output: Path,
    begin: Start | None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
    pretrained: dict[str, Any] | None = None,
    extra: Sequence[tuple[str, list[str]]] = (),
) -> TrainResult:
    """The recipe, from scratch or from `begin` (a language model or a classifier, grutext.warmstart);
    `pretrained` records the language model an --unlabeled run trained first, `extra` are (text, labels) rows
    added to the training split once validation is carved (a self-training round's pseudo-labelled texts)."""
    emit = on_event or silent
    if begin is not None:
        tok_cfg, model_cfg = settle(begin, tok_cfg, model_cfg)
    trainer_state: TrainerState | None = None
    saved: dict[str, Any] = {}  # the interrupted run's config.json
    if resume:
        trainer_state = read_trainer_state(output)
        model_cfg, saved = resumed_settings(output, tok_cfg, model_cfg, cfg)
    else:
        check_output_dir(output, overwrite)
        if overwrite and (position := resumable_position(output)) is not None:
            emit(DiscardingResumable(output, *position))
    if cfg.streaming:
        model_cfg.resolved_for(False, tok_cfg.kind, streaming=True)  # refuses --char-ngrams before reading data
    rt = start(cfg.device, cfg.backend)
    emit = rt.emitter(emit)
    seed_everything(cfg.seed)

    # ---- data, then the tokenizer: trained on the training texts only (a resumed run reuses the saved one)
    first = begin.labels if begin is not None else None
    run = (
        read_memory(spec, cfg, rt, emit, first, extra)
        if not cfg.streaming
        else _read_stream(spec, cfg, rt, emit, first)
    )
    model_cfg = model_cfg.resolved_for(run.multi_label, tok_cfg.kind, streaming=cfg.streaming)
    began = time.perf_counter()
    tokenizer, model_cfg, vectors = _tokenizer(run, tok_cfg, model_cfg, cfg, rt, output if resume else None, begin)
    tokenizer_seconds = time.perf_counter() - began
    if begin is not None and not resume:
        check_fit(tokenizer, run.tokenizer_texts, tok_cfg, begin)
    encoded = run.encode(tokenizer, tok_cfg, model_cfg)
    emit(
        TokenizerTrained(
            tok_cfg.kind, tokenizer.get_vocab_size(), tokenizer_seconds, encoded.mean_tokens, encoded.truncated
        )
    )
    if vectors is not None:
        vectors.summary["token_coverage"] = vectors.token_coverage(encoded.train_ids)
        emit(VectorsLoaded(vectors.summary))

    # ---- model, optimizer, schedule
    task = run.task
    model, runner, optimizer, plan, loop, best_state = _model_and_optimizer(
        model_cfg, cfg, tokenizer, run, vectors, encoded.steps_per_epoch, rt, begin, trainer_state, output
    )
    emit(
        ModelBuilt(
            model.num_parameters(), str(rt.device), describe(rt.backend), (loop.epoch, loop.step) if resume else None
        )
    )

    sections = _sections(cfg, run, plan, rt, vectors, saved)
    if begin is not None:
        sections["init_from"] = pretrained or begin.summary()
    write = checkpoint_writer(output, model, tokenizer, tok_cfg, run.labels, sections, task, rt, resume or overwrite)
    objective = ClassifierObjective(
        task,
        model,
        model.heads,
        cfg.resolved_word_dropout(run.multi_label),
        encoded.validation,
        rt.device,
        rt.group,
        cfg.freeze_steps if begin is not None else 0,
    )
    where = (lambda: f" (stream position {loop.data_position})") if cfg.streaming else (lambda: "")
    with StopSignals() as stop, torch_threads(rt.device, rt.backend):
        training = Training(runner, model, optimizer, encoded.source, objective, loop, best_state, plan)
        stopped = fit_or_save(training, rt, emit, stop, write, where)
        model.load_state_dict(best_state)
        metrics = _final_scores(objective, sections, loop, stopped, lambda: encoded.score_test(model))
        if begin is not None and begin.labels:  # a classifier trained on: how it does on its old test split now
            previous = _previous_test(begin, model, tokenizer, tok_cfg, task, rt)
            if previous is not None:
                metrics["previous_test"] = previous
    metrics["history"] = loop.history
    path = write(best_state, metrics, None)
    emit(Finished(path, loop.best_epoch, stopped, metrics))
    rt.close()
    return TrainResult(path, metrics, [EpochDone(**h) for h in loop.history])


def _final_scores(
    objective: ClassifierObjective,
    sections: dict[str, Any],
    loop: LoopState,
    stopped: str,
    score_test: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """The kept model's scores; the test split is only reported, never used to choose. One temperature fitted
    on validation first calibrates the probabilities (the labels stay as they are), and multi-label thresholds
    are then tuned on the calibrated probabilities (objective.final)."""
    sections["calibration"] = objective.calibrate()
    metrics: dict[str, Any] = {
        "best_epoch": loop.best_epoch,
        "epochs_run": len(loop.history),
        "stopped": stopped,
        "train_seconds": round(sum(h["seconds"] for h in loop.history), 2),
        "validation": objective.final(),
    }
    test = score_test()
    if test is not None:
        metrics["test"] = test
    return metrics


def _model_and_optimizer(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    tokenizer: Tokenizer,
    run: RunData,
    vectors: Pretrained | None,
    steps_per_epoch: int,
    rt: Runtime,
    begin: Start | None,
    trainer_state: TrainerState | None,
    output: Path,
) -> tuple[GRUClassifier, Any, Any, Plan, LoopState, dict[str, torch.Tensor]]:
    """The classifier (from `begin` where a run starts from a model), its runner, optimizer and schedule, and
    the loop's state: fresh, or an interrupted run's restored."""
    model = _classifier(model_cfg, tokenizer, run, vectors)
    if begin is not None and trainer_state is None:
        load_into(model, begin, run.labels)
    model = prepare(model, rt.device, rt.backend)
    runner = rt.wrap(model)
    lr = cfg.resolved_lr(run.multi_label)
    epochs, patience = cfg.resolved_schedule(steps_per_epoch)
    plan = Plan(epochs, patience, cfg.max_steps, lr, min_steps=cfg.resolved_min_steps())
    total_steps = int(min(epochs * steps_per_epoch, cfg.max_steps or float("inf")))
    optimizer = make_optimizer(
        model,
        rt.backend,
        lr=lr,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        total_steps=total_steps,
        warmup=cfg.warmup,
    )
    loop = LoopState(data_fingerprint=run.fingerprint, backend=rt.backend)
    best_state = clone(model.state_dict())
    if trainer_state is not None:
        _check_resumable(trainer_state, loop, output, rt)
        loop, best_state = restore(trainer_state, model, optimizer, rt.device, rt.group)
    return model, runner, optimizer, plan, loop, best_state


def _read_stream(
    spec: DataSpec, cfg: TrainConfig, rt: Runtime, emit: Callable[[Event], None], first: list[str] | None = None
) -> RunData:
    from grutext.stream_data import read_stream

    return read_stream(spec, cfg, rt, emit, first)


def _tokenizer(
    run: RunData,
    tok_cfg: TokenizerConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    rt: Runtime,
    resumed: Path | None,
    begin: Start | None = None,
) -> tuple[Tokenizer, ModelConfig, Pretrained | None]:
    """The run's tokenizer and its embedding size, with the pretrained table where --vectors asks for one. A
    resumed run reuses its saved tokenizer (its table is in the saved state), a run that starts from a
    checkpoint that one's; under torchrun rank 0 trains the tokenizer (and reads the vectors) and every other
    rank receives it."""
    pretrained = None
    if resumed is not None:
        previous = read_meta(resumed)
        if previous.labels != run.labels:
            raise ConfigError(f"cannot resume {resumed}: the data's labels differ from the interrupted run's")
        return previous.tokenizer, dataclasses.replace(model_cfg, embed_dim=previous.model_config.embed_dim), None
    if begin is not None:  # its table came with it (from --vectors, where its language model started from them)
        tokenizer = Tokenizer.from_str(begin.tokenizer.to_str())
        configure_truncation(tokenizer, tok_cfg)
        return tokenizer, model_cfg, None
    if rt.leader:
        tokenizer = train_tokenizer(run.tokenizer_texts, tok_cfg)
        if cfg.vectors is not None:
            pretrained = pretrained_embeddings(
                cfg.vectors, tokenizer, tok_cfg, run.tokenizer_texts, cfg.seed, model_cfg.embed_dim, cfg.vectors_std
            )
            tokenizer = pretrained.tokenizer
            model_cfg = dataclasses.replace(model_cfg, embed_dim=pretrained.summary["dim"])
    model_cfg = dataclasses.replace(model_cfg, embed_dim=model_cfg.embedding_size)
    if rt.group is not None:
        shared = rt.group.broadcast((tokenizer.to_str(), model_cfg.embed_dim) if rt.leader else None)
        if not rt.leader:
            tokenizer = Tokenizer.from_str(shared[0])
            configure_truncation(tokenizer, tok_cfg)
            model_cfg = dataclasses.replace(model_cfg, embed_dim=shared[1])
    return tokenizer, model_cfg, pretrained


def _classifier(
    model_cfg: ModelConfig, tokenizer: Tokenizer, run: RunData, pretrained: Pretrained | None
) -> GRUClassifier:
    """A new classifier: its table from the vectors where given, its outputs starting at the labels' priors."""
    model = GRUClassifier(model_cfg, DataShape(tokenizer.get_vocab_size(), len(run.labels), run.multi_label))
    with torch.no_grad():
        if pretrained is not None:
            model.embedding.weight.copy_(torch.from_numpy(pretrained.weights))
        if run.task.prior is not None:
            # Start every sigmoid at its label's frequency, not at 0.5: rare labels are otherwise spent for
            # thousands of steps pulling their bias down before they learn anything (Lin et al. 2017).
            model.classifier.bias.copy_(run.task.prior)
            if model.cfg.bigram_buckets:
                model.bigram_classifier.bias.copy_(run.task.prior)
    return model


def _previous_test(
    begin: Start, model: GRUClassifier, tokenizer: Tokenizer, tok_cfg: TokenizerConfig, task: Task, rt: Runtime
) -> dict[str, Any] | None:
    """The model's scores on the test split of the data the classifier it started from was trained on, where
    that data is still here (a local path with a test split); else None."""

    data = begin.config.get("data", {})
    source = data.get("source")
    if not source or not Path(source).exists():
        return None
    try:
        old = load_labelled(
            source, text_column=data.get("text_column"), label_column=data.get("label_column"), splits=["test"]
        )
    except GrutextError:
        return None
    if "test" not in old.splits:
        return None
    test = old.splits["test"]
    ids, grams = encode_inputs(tokenizer, test.texts, tok_cfg, model.cfg)
    probs = task.head.probabilities(infer_all(model, ids, rt.device, rt.group, grams))
    return {"source": source, **task.head.score_rows(probs, test.labels, test.origin)}


def _check_resumable(state: TrainerState, loop: LoopState, output: Path, rt: Runtime) -> None:
    """Refuse to resume on changed data, or on another backend than the one whose optimizer state was saved."""
    if loop.data_fingerprint and state.loop.get("data_fingerprint") != loop.data_fingerprint:
        raise ConfigError(
            f"cannot resume {output}: the training or validation data changed since it was saved; restore the "
            "data to resume, or start a new run (another --output, or --overwrite to discard the saved state)"
        )
    saved_backend = state.loop.get("backend", "fast")
    if saved_backend != rt.backend:
        raise ConfigError(
            f"cannot resume {output}: it was trained on the {saved_backend} backend and would continue on the "
            f"{rt.backend} one ({rt.device.type}); resume on the device it started on"
        )


def _sections(
    cfg: TrainConfig, run: RunData, plan: Plan, rt: Runtime, pretrained: Pretrained | None, saved: dict[str, Any]
) -> dict[str, Any]:
    """config.json's train, data and vectors sections: the settings as given and as resolved for this data."""
    train = to_dict(cfg)
    train["resolved_early_stop_metric"] = run.task.metric
    train["resolved_lr"] = plan.peak_lr
    train["resolved_epochs"], train["resolved_patience"] = plan.epochs, plan.patience
    train["resolved_word_dropout"] = cfg.resolved_word_dropout(run.multi_label)
    train["world_size"] = rt.world
    if run.task.weight is not None:
        train["resolved_class_weight"] = dict(zip(run.labels, run.task.weight.tolist(), strict=True))
    sections: dict[str, Any] = {"train": train, "data": run.section}
    if pretrained is not None:
        sections["vectors"] = pretrained.summary
    elif "vectors" in saved:  # a resumed run's table came from the vectors
        sections["vectors"] = saved["vectors"]
    return sections


def checkpoint_writer(
    output: Path,
    model: GRUClassifier,
    tokenizer: Tokenizer,
    tok_cfg: TokenizerConfig,
    labels: list[str],
    sections: dict[str, Any],
    task: Task,
    rt: Runtime,
    overwrite: bool,
) -> Callable[[dict[str, torch.Tensor], dict[str, Any], TrainerState | None], Path]:
    """write(weights, metrics, trainer state or None) -> the checkpoint's path; only rank 0 writes."""

    def write(weights: dict[str, torch.Tensor], metrics: dict[str, Any], state: TrainerState | None) -> Path:
        model.load_state_dict(weights)
        if not rt.leader:  # rank 0 writes; the others wait until it has
            assert rt.group is not None
            rt.group.barrier()
            return output
        # An interrupted run keeps the thresholds of its best epoch (0.5 before the first one).
        decision = task.kept_decision or task.head.decision_section()
        path = save(
            output,
            model=model,
            tokenizer=tokenizer,
            tokenizer_config=tok_cfg,
            labels=labels,
            sections={**sections, **({"decision": decision} if decision is not None else {})},
            metrics=metrics,
            overwrite=overwrite,
            extra=(lambda root: write_trainer_state(root, state)) if state is not None else None,
            with_onnx=state is None,  # an interrupted run's checkpoint is written within a signal's grace period
        )
        if rt.group is not None:
            rt.group.barrier()
        return path

    return write
