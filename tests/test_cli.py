"""pspnet_lite.cli: the one list parser, config flags made from dataclass fields, comma-separated choices and
one-line errors, shared by every command line of the package."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from pspnet_lite import bench, evaluate
from pspnet_lite.cli import (
    ArgumentParser,
    CommaList,
    add_field_flags,
    cli_errors,
    field_values,
    parse_field,
    parse_list,
    unknown_field_error,
)
from pspnet_lite.train.config import FIELDS, parse_value


@dataclass(frozen=True)
class Example:
    """One field of every kind a config has (annotations are strings, as in the package)."""

    steps: int = field(default=10, metadata={"help": "how many"})
    rate: float = 0.5
    on: bool = True
    name: str = "x"
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    root: str | None = None
    layers: tuple[int, ...] | None = None


F = {f.name: f for f in dataclasses.fields(Example)}


@pytest.mark.parametrize("value, expected", [
    ("1,2,3,6", [1, 2, 3, 6]), ("1, 2, 3, 6", [1, 2, 3, 6]), ("1 2 3 6", [1, 2, 3, 6]), (" 1,2 ", [1, 2]),
    ("[1, 2, 3, 6]", [1, 2, 3, 6]), ("[1,2]", [1, 2]), ("(1, 2)", [1, 2]), ("[3]", [3]), ("6", [6]),
    ([1, 2], [1, 2]), ((1, 2), [1, 2]), (["1", "2"], [1, 2]), (3, [3]),
    (None, []), ("", []), ("none", []), ("None", []), ("null", []), ("[]", []), ("()", []), ([], []),
])
def test_parse_list_reads_every_form(value, expected):
    out = parse_list(value)
    assert out == expected and all(type(v) is int for v in out)


def test_parse_list_with_other_casts():
    assert parse_list("ss,ms+flip", str) == ["ss", "ms+flip"]
    assert parse_list("0.5 1.75", float) == [0.5, 1.75]
    assert parse_list("[0.5, 1]", float) == [0.5, 1.0]


@pytest.mark.parametrize("value, pattern", [
    ("1,a", r"cannot read bins '1,a' as ints; write it as 1,2,3"), ("x", "cannot read bins 'x'"),
    ("[1, 2", r"cannot read bins '\[1, 2'; write it as 1,2,3"), ("[1, 'a']", "cannot read bins"),
    ("1.5", "as ints"),
])
def test_parse_list_errors_name_the_list_and_the_form(value, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_list(value, int, "bins")


def test_parse_field_numbers_name_the_field_value_and_an_example():
    assert parse_field(F["steps"], "12") == 12 and type(parse_field(F["rate"], "0")) is float
    with pytest.raises(ValueError, match=r"steps must be an integer; got 'abc' \(e\.g\. --steps 100\)"):
        parse_field(F["steps"], "abc")
    with pytest.raises(ValueError, match=r"steps must be an integer; got '1\.5'"):
        parse_field(F["steps"], "1.5")
    with pytest.raises(ValueError, match=r"rate must be a number; got 'fast' \(e\.g\. --rate 0\.01\)"):
        parse_field(F["rate"], "fast")


def test_lr_abc_is_a_value_error_naming_lr():
    """The issue's ``--set lr=abc`` (a TypeError traceback before): a ValueError that names lr and the value."""
    for call in (lambda: parse_field(FIELDS["lr"], "abc"), lambda: parse_value("lr", "abc")):
        with pytest.raises(ValueError, match=r"^lr must be a number; got 'abc' \(e\.g\. --lr 0\.01\)$"):
            call()


@pytest.mark.parametrize("text, expected", [
    ("1", True), ("true", True), ("True", True), ("yes", True), ("on", True),
    ("0", False), ("false", False), ("FALSE", False), ("no", False), ("off", False),
])
def test_parse_field_booleans(text, expected):
    assert parse_field(F["on"], text) is expected


def test_parse_field_bad_boolean():
    with pytest.raises(ValueError, match="on must be true or false; got 'maybe'"):
        parse_field(F["on"], "maybe")


def test_parse_field_tuples_take_every_list_form():
    for text in ("1,2,3", "[1, 2, 3]", "1 2 3"):
        assert parse_field(F["sizes"], text) == (1, 2, 3)
    assert parse_field(F["sizes"], "[]") == () and parse_field(F["sizes"], "none") == ()  # not optional: empty
    assert parse_field(F["layers"], "none") is None and parse_field(F["layers"], "1,1,2,1") == (1, 1, 2, 1)
    with pytest.raises(ValueError, match="cannot read sizes '1,x'"):
        parse_field(F["sizes"], "1,x")


def test_parse_field_optional_and_string_fields():
    for text in ("none", "None", "null", ""):
        assert parse_field(F["limit"], text) is None and parse_field(F["root"], text) is None
    assert parse_field(F["limit"], "5") == 5
    assert parse_field(F["name"], "none") == "none"  # a non-optional string keeps the word
    assert parse_field(F["root"], "123") == "123"  # strings stay verbatim
    assert parse_value("freeze_bn", "none") == "none" and parse_value("pretrained", "none") is None
    assert parse_value("val_split", "none") is None and parse_value("data_root", "123") == "123"


def test_parse_field_checks_choices():
    assert parse_field(F["mode"], "b") == "b"
    with pytest.raises(ValueError, match="mode must be one of a, b; got 'c'"):
        parse_field(F["mode"], "c")
    with pytest.raises(ValueError, match="pooling must be one of avg, max; got 'sum'"):
        parse_value("pooling", "sum")
    with pytest.raises(ValueError, match="output_stride must be one of"):
        parse_value("output_stride", "4")


def test_unknown_field_error_suggests_the_closest_names():
    err = unknown_field_error("lrr", FIELDS, "TrainConfig field")
    assert isinstance(err, ValueError) and str(err).startswith("unknown TrainConfig field 'lrr'; did you mean lr")
    err = unknown_field_error("zzz", ["b", "a"])
    assert str(err) == "unknown config field 'zzz'; fields are a, b"


def test_add_field_flags_and_field_values():
    p = argparse.ArgumentParser()
    add_field_flags(p, dataclasses.fields(Example), defaults={"limit": "the data set's"})
    help_text = p.format_help()
    assert "--steps" in help_text and "how many [default: 10]" in help_text and "--no-on" in help_text
    assert "[default: \"the data set's\"]" in help_text
    args = p.parse_args(["--steps", "3", "--no-on", "--sizes", "[4, 5]", "--limit", "none", "--mode", "b"])
    assert field_values(args, dataclasses.fields(Example)) == {"steps": 3, "on": False, "sizes": (4, 5),
                                                                 "limit": None, "mode": "b"}
    assert field_values(p.parse_args([]), dataclasses.fields(Example)) == {}  # nothing given: nothing set
    with pytest.raises(ValueError, match="steps must be an integer"):
        field_values(p.parse_args(["--steps", "x"]), dataclasses.fields(Example))


def test_comma_list_takes_spaces_or_commas_and_checks_each_item():
    p = argparse.ArgumentParser()
    p.add_argument("--protocols", action=CommaList, valid=("ss", "ms", "ss+flip"), default=["ss"])
    assert p.parse_args([]).protocols == ["ss"]
    assert p.parse_args(["--protocols", "ss", "ms"]).protocols == ["ss", "ms"]
    assert p.parse_args(["--protocols", "ss,ms", "ss+flip"]).protocols == ["ss", "ms", "ss+flip"]
    with pytest.raises(SystemExit):
        p.parse_args(["--protocols", "ss,mss"])


def test_list_flags_of_the_command_lines_take_spaces_or_commas():
    p = evaluate.get_args_parser()
    readme = p.parse_args("--checkpoint runs/lite/best.pt --protocols ss ss+flip ms ms+flip".split())
    assert readme.protocols == ["ss", "ss+flip", "ms", "ms+flip"]
    assert p.parse_args(["--checkpoint", "c", "--protocols", "ss,ms+flip", "ss+flip"]).protocols == [
        "ss", "ms+flip", "ss+flip"]
    assert p.parse_args(["--checkpoint", "c"]).protocols is None  # resolved from the checkpoint's record:
    assert evaluate.default_protocol_names({}) == ["ss"]           # ss, or ss+flip for a recorded flip
    assert evaluate.default_protocol_names({"flip": True}) == ["ss+flip"]
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "c", "--protocols", "ss,mss"])
    b = bench.get_args_parser()
    readme = b.parse_args("--backbone resnet50 --crop 473 --precisions fp32 bf16 "
                          "--memory-formats contiguous channels_last".split())
    assert (readme.backbone, readme.crop, readme.precisions, readme.memory_formats) == (
        "resnet50", 473, ["fp32", "bf16"], ["contiguous", "channels_last"])
    commas = b.parse_args(["--precisions", "fp32,bf16", "--memory-formats", "contiguous,channels_last"])
    assert (commas.precisions, commas.memory_formats) == (readme.precisions, readme.memory_formats)
    with pytest.raises(SystemExit):
        b.parse_args(["--precisions", "fp32,int8"])


def test_argument_parser_errors_are_one_line_and_exit_2(capsys):
    p = ArgumentParser("python -m tool")
    p.add_argument("--n", type=int)
    for argv, message in ((["--n", "x"], "error: argument --n: invalid int value: 'x'"),
                          (["--bogus"], "error: unrecognized arguments: --bogus")):
        with pytest.raises(SystemExit) as exc:
            p.parse_args(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == f"{message} (see python -m tool --help)\n"


@pytest.mark.parametrize("error", [ValueError("lr must be a number; got 'abc'"),
                                   FileNotFoundError("file 'x.pt' does not exist")])
def test_cli_errors_turn_user_errors_into_one_line_and_exit_2(error, capsys):
    with pytest.raises(SystemExit) as exc:
        with cli_errors():
            raise error
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: {error}\n"


def test_cli_errors_keep_the_traceback_of_a_bug():
    with pytest.raises(ZeroDivisionError):
        with cli_errors():
            1 / 0  # noqa: B018
    with cli_errors():  # no error: nothing happens
        pass
