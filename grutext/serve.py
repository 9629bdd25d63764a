"""`grutext serve`: a checkpoint behind an HTTP JSON API, on Starlette and uvicorn.

Why Starlette rather than FastAPI: three endpoints whose input is one list of strings need no pydantic models
or generated docs, and FastAPI is Starlette plus those (and their import time); uvicorn is the ASGI server
both run on, with graceful shutdown and multi-process workers built in.

    POST /predict  {"texts": ["...", ...], "top_k": 2}  ->  {"predictions": [record, ...]}
                   optional "min_score": 0.9 and "fallback": "review", as predict --min-score/--fallback
    GET  /health   200 {"status": "ok"} once the model is loaded
    GET  /info     what `grutext info --json` prints

A record is exactly what `grutext predict --format jsonl` prints for that text. Requests that arrive together
are micro-batched: the first one opens a batch, which closes after BATCH_WAIT seconds or MAX_BATCH_TEXTS
texts, and one forward pass serves them all. Every bad request gets a 4xx JSON error and the server stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grutext.errors import ConfigError, InputError
from grutext.prediction import Prediction, abstain, check_abstain, check_texts, record

BATCH_WAIT = 0.005  # seconds a batch stays open for more requests
MAX_BATCH_TEXTS = 512  # texts per forward pass
MAX_BODY_BYTES = 8 * 2**20
MAX_TEXTS = 1000
MODEL_ENV = "GRUTEXT_SERVE_CONFIG"  # how uvicorn's worker processes learn what to serve


@dataclass
class ServeConfig:
    model: str
    engine: str = "auto"
    max_body_bytes: int = MAX_BODY_BYTES
    max_texts: int = MAX_TEXTS
    batch_wait: float = BATCH_WAIT

    def to_env(self) -> str:
        return json.dumps(self.__dict__)

    @staticmethod
    def from_env() -> ServeConfig:
        return ServeConfig(**json.loads(os.environ[MODEL_ENV]))


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[list[Prediction]]


@dataclass
class Batcher:
    """Collects the texts of concurrent requests into one forward pass, run in a worker thread."""

    model: Any
    wait: float = BATCH_WAIT
    queue: asyncio.Queue[_Pending] | None = None
    task: asyncio.Task[None] | None = None
    batches: int = 0
    texts: int = 0

    async def predict(self, texts: list[str]) -> list[Prediction]:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._run())
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            try:
                await self._serve(batch)
            except Exception as exc:  # the batch fails, the batcher goes on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _serve(self, batch: list[_Pending]) -> None:
        """Gather what arrives within the window (or up to MAX_BATCH_TEXTS), run one forward pass, answer."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        size = len(batch[0].texts)
        deadline = loop.time() + self.wait
        while size < MAX_BATCH_TEXTS:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout)
            except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11 on
                break
            batch.append(item)
            size += len(item.texts)
        texts = [t for item in batch for t in item.texts]
        preds = await loop.run_in_executor(None, self.model.predict, texts)
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(preds[start : start + len(item.texts)])
            start += len(item.texts)


@dataclass
class Asked:
    """A /predict body: the texts and how to answer (top_k; min_score and fallback, to abstain)."""

    texts: list[str]
    top_k: int | None = None
    min_score: float | None = None
    fallback: str = ""


FIELDS = ("texts", "top_k", "min_score", "fallback")


def parse_request(body: bytes, max_texts: int, num_labels: int, multi_label: bool = False) -> Asked:
    """The fields of a /predict body, or BadRequest saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(422, 'expected a JSON object: {"texts": ["...", ...]}')
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(
            422, f"unknown field(s) {', '.join(unknown)}; expected texts and, optionally, top_k, min_score, fallback"
        )
    texts = data.get("texts")
    if texts is None:
        raise BadRequest(422, 'missing "texts": expected {"texts": ["...", ...]}')
    if not isinstance(texts, list):
        raise BadRequest(422, '"texts" must be a list of strings')
    try:
        check_texts(texts)
    except InputError as exc:
        raise BadRequest(422, str(exc)) from None
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; at most {max_texts} (--max-texts)")
    top_k = data.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise BadRequest(422, '"top_k" must be a positive integer')
    min_score, fallback = data.get("min_score"), data.get("fallback", "")
    if "fallback" in data and min_score is None:
        raise BadRequest(422, '"fallback" is the label for texts below "min_score"; give "min_score" too')
    try:
        check_abstain(min_score, fallback, multi_label, ('"min_score"', '"fallback"'), "it takes no min_score")
    except ConfigError as exc:
        raise BadRequest(422, str(exc)) from None
    return Asked(texts, None if top_k is None else min(top_k, num_labels), min_score, fallback)


def create_app(config: ServeConfig | None = None) -> Any:
    """The ASGI application (an app factory, so uvicorn's worker processes can build their own)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from grutext.engine import load_engine, use_threads

    config = config or ServeConfig.from_env()
    model = load_engine(config.model, config.engine)
    use_threads(model)  # a server process runs one model: its thread count is the process's own
    batcher = Batcher(model, config.batch_wait)
    info = model.info()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise BadRequest(413, f"the body is {declared} bytes; at most {config.max_body_bytes} (--max-body)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise BadRequest(413, f"the body is over {config.max_body_bytes} bytes (--max-body)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request: Request) -> JSONResponse:
        try:
            asked = parse_request(await read_body(request), config.max_texts, len(model.labels), model.multi_label)
        except BadRequest as exc:
            return error(exc.status, str(exc))
        preds = await batcher.predict(asked.texts) if asked.texts else []
        # this request's own records (the batch shares only the forward pass): its min_score and fallback
        abstain(preds, asked.min_score, asked.fallback, asked.texts)
        return JSONResponse({"predictions": [record(p, asked.top_k) for p in preds]})

    async def health(request: Request) -> JSONResponse:
        stats = {"forward_passes": batcher.batches, "texts": batcher.texts}
        return JSONResponse({"status": "ok", "model": info["path"], "labels": len(model.labels), **stats})

    async def describe(request: Request) -> JSONResponse:
        return JSONResponse(info)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", describe, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, every line on stderr (its access log goes to stdout by default): one per request."""
    from uvicorn.config import LOGGING_CONFIG

    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return dict(config)


def run(config: ServeConfig, host: str, port: int, workers: int) -> None:
    """Serve until SIGINT or SIGTERM, which stop accepting connections and drain the requests in flight; then
    return (exit status 0)."""
    import socket

    import uvicorn

    try:  # a port in use is the user's error, said in one line (uvicorn would log it and exit 3)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port or --host") from None
    if workers == 1:  # one process: the model is loaded (and its errors raised) before the port opens
        app = create_app(config)
        with _drain_then_exit_0():
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=log_config())).run()
    else:
        os.environ[MODEL_ENV] = config.to_env()  # how the worker processes learn what to serve
        with _drain_then_exit_0():
            uvicorn.run(
                "grutext.serve:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_config=log_config(),
            )


@contextlib.contextmanager
def _drain_then_exit_0() -> Iterator[None]:
    """uvicorn handles SIGINT/SIGTERM while it runs (it stops accepting and drains), then raises the signal
    again: with these handlers, only around the server, that second delivery is a no-op, so a drained server
    ends with status 0. The previous handlers come back after."""
    import signal

    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
