"""The Chinese README keeps up with the English one: every command, every documented option, links both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from grutext.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"


def documented(flag: str, text: str) -> bool:
    """The rule of test_cli.py's test_every_option_is_documented_in_readme: the flag appears in backticks."""
    return f"`{flag}" in text or f"{flag}`" in text or f"{flag}/" in text


def long_options() -> list[tuple[str, str]]:
    """(command, flag) for every long option of every subcommand, --help aside."""
    return [
        (name, flag)
        for name, command in cli.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        for flag in param.opts
        if flag.startswith("--") and flag != "--help"
    ]


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def readme_zh() -> str:
    return README_ZH.read_text(encoding="utf-8")


def test_every_command_is_in_both_readmes(readme: str, readme_zh: str) -> None:
    names = list(cli.commands)  # type: ignore[attr-defined]
    assert names
    for name in names:
        assert f"grutext {name}" in readme, f"README.md does not show `grutext {name}`"
        assert f"grutext {name}" in readme_zh, f"README.zh-CN.md does not show `grutext {name}`"


def test_every_option_the_english_readme_documents_is_in_the_chinese_one(readme: str, readme_zh: str) -> None:
    options = [(name, flag) for name, flag in long_options() if documented(flag, readme)]
    assert options
    missing = [f"grutext {name} {flag}" for name, flag in options if not documented(flag, readme_zh)]
    assert not missing, f"README.md documents these but README.zh-CN.md does not: {', '.join(missing)}"


def test_chinese_readme_links_to_english_readme(readme_zh: str) -> None:
    assert "](README.md)" in readme_zh


def test_english_readme_links_to_chinese_readme(readme: str) -> None:
    assert "](README.zh-CN.md)" in readme
