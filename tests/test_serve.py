"""`grutext serve` as a real server on a free localhost port, spoken to over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(model: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "grutext", "serve", "-m", str(model), "--port", str(port), *args],
        stderr=subprocess.PIPE,
        env=ENV,
    )
    for _ in range(300):
        try:
            if request(port, "GET", "/health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "the server did not start")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(exported_model: Path) -> Iterator[int]:
    proc, port = start(exported_model, "--max-body", "4096", "--max-texts", "50")
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_predict_returns_predicts_jsonl_records(server: int, exported_model: Path) -> None:
    from click.testing import CliRunner

    from grutext.cli import cli

    texts = ["a wonderful superb film", "awful and dull", ""]
    status, body = request(server, "POST", "/predict", json.dumps({"texts": texts, "top_k": 2}).encode())
    assert status == 200
    cli_out = (
        CliRunner()
        .invoke(
            cli,
            ["predict", "-m", str(exported_model), "--format", "jsonl", "--top-k", "2"],
            input="\n".join(texts) + "\n",
        )
        .stdout
    )
    assert body["predictions"] == [json.loads(line) for line in cli_out.splitlines()]


def test_health_and_info(server: int, exported_model: Path) -> None:
    assert request(server, "GET", "/health")[0] == 200
    status, info = request(server, "GET", "/info")
    assert status == 200 and info["labels"] == ["neg", "pos"] and info["path"] == str(exported_model)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"texts": [', 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not valid UTF-8"),
        (b'["a"]', 422, "expected a JSON object"),
        (b"{}", 422, 'missing "texts"'),
        (b'{"texts": "one string"}', 422, "must be a list of strings"),
        (b'{"texts": [1, 2]}', 422, "must be a list of strings"),
        (b'{"texts": ["a"], "top_k": 0}', 422, "top_k"),
        (b'{"texts": ["a"], "k": 1}', 422, "unknown field"),
        (b'{"texts": ["a"], "min_score": 1.5}', 422, '"min_score" must be a number from 0 to 1'),
        (b'{"texts": ["a"], "min_score": true}', 422, '"min_score" must be a number'),
        (b'{"texts": ["a"], "fallback": "x"}', 422, 'give "min_score" too'),
        (b'{"texts": ["a"], "min_score": 0.5, "fallback": 3}', 422, '"fallback" must be a string'),
        (json.dumps({"texts": ["a"] * 51}).encode(), 413, "at most 50"),
        (json.dumps({"texts": ["a" * 5000]}).encode(), 413, "at most 4096"),
    ],
)
def test_bad_requests_get_a_json_4xx_and_the_server_stays_up(
    server: int, body: bytes, status: int, message: str
) -> None:
    got, answer = request(server, "POST", "/predict", body)
    assert got == status and message in str(answer["error"])
    ok, after = request(server, "POST", "/predict", b'{"texts": ["superb"]}')
    assert ok == 200 and after["predictions"][0]["label"] == "pos"  # type: ignore[index]


def test_min_score_abstains_per_request(server: int) -> None:
    texts = ["a wonderful superb film", "awful and dull"]
    body = {"texts": texts, "min_score": 1.0, "fallback": "review"}
    status, answer = request(server, "POST", "/predict", json.dumps(body).encode())
    assert status == 200
    for record in answer["predictions"]:  # type: ignore[union-attr]
        assert record["label"] == "review" and record["abstained"] is True and len(record["probs"]) == 2
        assert 0.5 <= record["score"] < 1.0  # the top probability stays, for whoever takes the text over
    # the next request, in the same forward pass or not, answers as it asks: no abstaining
    status, plain = request(server, "POST", "/predict", json.dumps({"texts": texts}).encode())
    assert [r["label"] for r in plain["predictions"]] == ["pos", "neg"]  # type: ignore[index, union-attr]
    assert all("abstained" not in r for r in plain["predictions"])  # type: ignore[union-attr]


def test_a_blank_text_gets_no_label(server: int) -> None:
    body = {"texts": ["a wonderful superb film", ""], "min_score": 0.0, "fallback": "review"}
    status, answer = request(server, "POST", "/predict", json.dumps(body).encode())
    first, blank = answer["predictions"]  # type: ignore[index]
    assert status == 200 and first["label"] == "pos" and "blank" not in first
    assert blank["label"] == "review" and blank["blank"] is True and blank["abstained"] is True


def test_unknown_paths_and_methods(server: int) -> None:
    status, answer = request(server, "GET", "/nope")
    assert status == 404 and "GET /nope" in str(answer["error"])
    assert request(server, "GET", "/predict")[0] == 405


def test_concurrent_requests_share_forward_passes(server: int) -> None:
    before = request(server, "GET", "/health")[1]
    body = json.dumps({"texts": ["a wonderful film", "dreadful plot"]}).encode()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: request(server, "POST", "/predict", body), range(320)))
    assert all(status == 200 and len(answer["predictions"]) == 2 for status, answer in results)  # type: ignore[arg-type]
    after = request(server, "GET", "/health")[1]
    passes = int(after["forward_passes"]) - int(before["forward_passes"])  # type: ignore[call-overload]
    assert int(after["texts"]) - int(before["texts"]) == 640  # type: ignore[call-overload]
    assert passes < 320  # requests that arrived together were answered by one pass


def test_sigterm_drains_in_flight_requests_and_exits_0(exported_model: Path) -> None:
    proc, port = start(exported_model)
    body = json.dumps({"texts": ["a wonderful superb film " * 200] * 500}).encode()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(request, port, "POST", "/predict", body) for _ in range(4)]
        time.sleep(0.3)  # the requests are in flight
        proc.send_signal(signal.SIGTERM)
        answers = [f.result(timeout=120) for f in futures]
    assert all(status == 200 and len(answer["predictions"]) == 500 for status, answer in answers)  # type: ignore[arg-type]
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    assert "Traceback" not in log
    assert f"running on http://127.0.0.1:{port}" in log  # the default bind: this machine only
    assert log.count('"POST /predict HTTP/1.1" 200') == 4  # one log line per request, on stderr
