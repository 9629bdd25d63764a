"""predict's streaming: the first answer comes after a small chunk, chunks grow to full size, long lines
close a chunk early, and a consumer that stops costs no chunk it did not ask for."""

from __future__ import annotations

from collections.abc import Callable

from grutext.prediction import Prediction, stream


def recorder() -> tuple[list[int], Callable[[list[str]], list[Prediction]]]:
    calls: list[int] = []

    def predict(chunk: list[str]) -> list[Prediction]:
        calls.append(len(chunk))
        return [Prediction("x", 1.0, {"x": 1.0}) for _ in chunk]

    return calls, predict


def test_chunks_start_small_and_double_up_to_full_size() -> None:
    calls, predict = recorder()
    chunks = list(stream(predict, ["short text"] * 10_000, chunk_size=4096, wait=5.0))
    assert calls == [64, 128, 256, 512, 1024, 2048, 4096, 1872]
    assert sum(len(c) for c in chunks) == 10_000


def test_the_first_answer_waits_for_one_small_chunk_only() -> None:
    calls, predict = recorder()
    answers = stream(predict, ["a line of words " * 27] * 100_000, wait=5.0)
    assert len(next(answers)) == 64
    answers.close()  # the reader has gone (`| head -2`): nothing more is computed
    assert calls == [64]


def test_long_lines_close_a_chunk_by_characters() -> None:
    calls, predict = recorder()
    texts = ["y" * 100_000] * 40
    list(stream(predict, texts, chunk_size=4096, wait=5.0, first_chunk=4096, chunk_chars=300_000))
    assert calls == [3] * 13 + [1]
