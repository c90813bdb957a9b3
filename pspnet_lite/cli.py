"""What every command line of the package shares: one list parser, config flags made from dataclass
fields, comma-separated choices, and one-line errors.

The command lines (``python -m pspnet_lite.train|evaluate|predict|bench`` and the data-set check
``python -m pspnet_lite.data.datasets``) follow torchvision's ``references/segmentation`` scripts: a
``get_args_parser()``, a ``main(args)`` callable from Python, plain argparse. A bad value ends in exit
status 2 and one ``error: ...`` line that names the value and the fix (:func:`cli_errors`), never a
traceback; a traceback means a bug.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import difflib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (an unknown flag, a bad choice) are one ``error: ...`` line and exit status 2,
    like the value errors of :func:`cli_errors`, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_list(value: Any, cast: Callable[[Any], Any] = int, name: str = "list") -> list:
    """The package's one list parser: every form a list arrives in, as ``[cast(x), ...]``.

    ``"1,2,3,6"``, ``"1 2 3 6"``, ``"[1, 2, 3, 6]"`` (papermill ``-p`` delivers lists as such strings), a real
    list or tuple, a single number, and ``None`` / ``""`` / ``"none"`` / ``"[]"`` (the empty list) are all
    accepted. A value that does not parse raises a ValueError naming ``name`` and the expected form.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"cannot read {name} {value!r}; write it as 1,2,3") from err
            items = list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        elif text.lower() in ("", "none", "null"):
            items = []
        else:
            items = [part for part in text.replace(" ", ",").split(",") if part]
    elif value is None:
        items = []
    else:
        items = [value]
    try:
        return [cast(item) for item in items]
    except (TypeError, ValueError) as err:
        kind = getattr(cast, "__name__", str(cast))
        raise ValueError(f"cannot read {name} {value!r} as {kind}s; write it as 1,2,3") from err


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, optional) of a dataclass field whose annotation is a string (PEP 563)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in text
    base = text.replace("| None", "").replace("None |", "").strip()
    return base.split("[")[0], optional


def parse_field(f: dataclasses.Field, text: str) -> Any:
    """A command-line string for dataclass field ``f``, converted to the field's type.

    ``none`` / ``null`` / an empty string is None for optional fields only (``--freeze-bn none`` stays
    the string ``"none"``); tuple fields take any form :func:`parse_list` reads. A value of the wrong
    type raises a ValueError that names the field, the value and what is expected.
    """
    base, optional = _kind(f)
    low = text.strip().lower()
    if optional and low in ("none", "null", ""):
        return None
    if base == "bool":
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{f.name} must be true or false; got {text!r}")
    if base == "tuple":
        return tuple(parse_list(text, int, f.name))
    converters = {"int": int, "float": float}
    if base in converters:
        try:
            value = converters[base](text)
        except ValueError:
            example = {"int": "100", "float": "0.01"}[base]
            raise ValueError(f"{f.name} must be {'an integer' if base == 'int' else 'a number'}; got "
                             f"{text!r} (e.g. --{f.name.replace('_', '-')} {example})") from None
    else:
        value = text  # strings stay verbatim (a data_root named "123" stays a string)
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}; got {text!r}")
    return value


def unknown_field_error(name: str, fields: Iterable[str], what: str = "config field") -> ValueError:
    """A ValueError for an unknown field name, with the closest names (or all of them)."""
    fields = sorted(fields)
    close = difflib.get_close_matches(name, fields, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"fields are {', '.join(fields)}"
    return ValueError(f"unknown {what} {name!r}; {hint}")


def add_field_flags(group, fields: Iterable[dataclasses.Field], defaults: dict | None = None) -> None:
    """One ``--field-name`` flag per dataclass field, parsed later by :func:`field_values`.

    Booleans get ``--x`` / ``--no-x``; every flag defaults to None (= not given), so a preset or a
    checkpoint can supply the value. ``defaults`` overrides the defaults shown in the help.
    """
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        shown = (defaults or {}).get(f.name, f.default)
        text = f"{f.metadata.get('help', '')} [default: {shown!r}]"
        if _kind(f)[0] == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=text)


def field_values(args: argparse.Namespace, fields: Iterable[dataclasses.Field]) -> dict:
    """``{name: parsed value}`` of the field flags given on the command line."""
    out = {}
    for f in fields:
        value = getattr(args, f.name, None)
        if value is not None:
            out[f.name] = value if isinstance(value, bool) else parse_field(f, str(value))
    return out


class CommaList(argparse.Action):
    """A ``nargs="+"`` option that also takes comma-separated values: ``--protocols ss ms+flip`` ==
    ``--protocols ss,ms+flip``; every item is checked against ``valid`` (argparse's own ``choices``
    would reject the comma form)."""

    def __init__(self, option_strings, dest, valid=None, **kw):
        kw.setdefault("nargs", "+")
        self.valid = tuple(valid) if valid is not None else None
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        items = [v for value in values for v in parse_list(str(value), str, option_string)]
        bad = [v for v in items if self.valid is not None and v not in self.valid]
        if bad or not items:
            parser.error(f"argument {option_string}: invalid choice(s) {bad or values} "
                         f"(choose from {', '.join(self.valid or ())}; space- or comma-separated)")
        setattr(namespace, self.dest, items)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the user's errors (bad values, missing files: :data:`USER_ERRORS`) into one ``error: ...``
    line on stderr and exit status 2, as argparse does for bad flags; any other exception keeps its
    traceback (a bug to report)."""
    try:
        yield
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
