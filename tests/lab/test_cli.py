"""`netscand lab` argument handling and errors (the paths that need no root)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from netscand.lab import cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="netscand")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *argv])
    code: int = args.func(args)
    return code


def test_status_without_a_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("status", "--prefix", "nobodyhere", "--state-dir", str(tmp_path)) == 1
    assert capsys.readouterr().out.strip() == "no lab"


@pytest.mark.parametrize("argv", [("--prefix", "Bad"), ("--hosts", "0"), ("--loss", "101"), ("--delay", "-1")])
def test_bad_arguments_give_one_line_and_exit_1(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("up", *argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("netscand lab: ") and err.count("\n") == 1
