"""The command line as a user meets it: every option says what it does and its default; a path
argument of the wrong kind (a file where a folder is expected, or the reverse) is one line, exit
status 2, no traceback; hints never suggest writing generated data into a folder udass did not
generate."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from udass.cli import build_parser, main
from udass.data.datasets import data_hint, flow_hint


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_help_and_says_its_default(name):
    parser = _subcommands()[name]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help, f"udass {name} {flag} has no help text"
        flagged = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.required or not action.option_strings or flagged:
            continue
        helped = parser._get_formatter()._get_help_string(action)
        assert "default" in helped, f"udass {name} {flag}: help says no default ({helped!r})"
        if "%(default)s" in helped:   # the formatter's own "(default: X)", as printed
            assert f"(default: {action.default})" in text, f"udass {name} {flag}"


def test_help_shows_the_defaults_as_printed():
    text = " ".join(_subcommands()["train"].format_help().split())
    for shown in ("(default: quadmix)", "(default: vit)", "(default: demo)", "(default: 0)",
                  "(default: auto)", "(default: synthetic-video)"):
        assert shown in text


def _file(tmp: Path) -> str:
    f = tmp / "a_file.txt"
    f.write_text("not a folder")
    return str(f)


def _folder(tmp: Path) -> str:
    d = tmp / "a_folder"
    d.mkdir(exist_ok=True)
    return str(d)


# (argv with F = an existing file, D = an existing folder, expected start of the message)
PATH_CASES = {
    "train --out FILE": (["train", "--profile", "test", "--out", "F"], "--out F is a file, expected a folder"),
    "train --data-root FILE": (["train", "--profile", "test", "--data-root", "F", "--out", "D"],
                               "--data-root F is a file, expected a folder"),
    "train --flow-root FILE": (["train", "--profile", "test", "--flow-root", "F", "--out", "D"],
                               "--flow-root F is a file, expected a folder"),
    "evaluate --checkpoint FOLDER": (["evaluate", "--checkpoint", "D"], "--checkpoint D is a folder, expected a file"),
    "evaluate --out FILE": (["evaluate", "--checkpoint", "F", "--out", "F"], "--out F is a file, expected a folder"),
    "evaluate --data-root FILE": (["evaluate", "--checkpoint", "F", "--data-root", "F"],
                                  "--data-root F is a file, expected a folder"),
    "segment -o FILE": (["segment", "D", "--checkpoint", "F", "-o", "F"], "--out F is a file, expected a folder"),
    "segment --checkpoint FOLDER": (["segment", "D", "--checkpoint", "D", "-o", "D"],
                                    "--checkpoint D is a folder, expected a file"),
    "synth --out FILE": (["synth", "--benchmark", "synthetic-video", "--out", "F"], "--out F is a file"),
    "flow --data-root FILE": (["flow", "--benchmark", "synthetic-video", "--data-root", "F"],
                              "--data-root F is a file, expected a folder"),
    "flow --flow-root FILE": (["flow", "--benchmark", "synthetic-video", "--data-root", "D", "--flow-root", "F"],
                              "--flow-root F is a file, expected a folder"),
    "check-data --data-root FILE": (["check-data", "--benchmark", "synthetic-video", "--data-root", "F"],
                                    "--data-root F is a file, expected a folder"),
    "reproduce --data-root FILE": (["reproduce", "--data-root", "F"], "--data-root F is a file, expected a folder"),
    "convert SRC FOLDER": (["convert", "D", "--from", "tps", "-o", "F"], "SOURCE D is a folder, expected a file"),
    "convert -o FOLDER": (["convert", "F", "--from", "tps", "-o", "D"], "--out D is a folder, expected a file"),
}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_a_path_of_the_wrong_kind_is_one_line_and_exit_2(case, tmp_path, capsys):
    argv, expected = PATH_CASES[case]
    names = {"F": _file(tmp_path), "D": _folder(tmp_path)}
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    for key, value in names.items():
        expected = expected.replace(f" {key} ", f" {value} ")
    assert err.startswith(f"udass: error: {expected}") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing written


def test_hints_suggest_regenerating_only_a_root_udass_synth_wrote(tmp_path):
    from udass.data.synthetic import ensure_synthetic_root

    real = tmp_path / "datasets"
    (real / "cityscapes").mkdir(parents=True)
    for hint in (data_hint("synthetic-video", real, "cityscapes-seq"),
                 flow_hint("synthetic-video", real, real / "udass_flow", "exact")):
        assert f"--out {real}" not in hint
        assert "was not written by `udass synth`" in hint and "--out NEW_FOLDER" in hint
    generated = ensure_synthetic_root("synthetic-video", size="tiny", seed=0)
    assert data_hint("synthetic-video", generated, "cityscapes-seq") == (
        f"regenerate it with `udass synth --benchmark synthetic-video --out {generated}`")
