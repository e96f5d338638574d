"""The options of `vaekit train`, generated from the config dataclasses: each field's help,
choices and kind of value are in its metadata (:func:`vaekit.config.opt`), so an option is
spelled once, where the field is."""

from __future__ import annotations

import argparse
import dataclasses
import math

from ..config import SECTIONS, Config, choices_of


def ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by ',' or 'x', got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def indices(text: str) -> list[int]:
    """Non-negative integers separated by ',' (latent dimensions)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by ',', got '{text}'") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers 0 or more separated by ',', got '{text}'")
    return values


def sizes(text: str) -> int | list[int]:
    """One size (a two-layer model) or a list of them (more layers)."""
    values = ints(text)
    return values[0] if len(values) == 1 else values


def span(text: str) -> list[float]:
    """Two numbers 'lo,hi' with lo < hi."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not values[0] < values[1] or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI with LO < HI, got '{text}'")
    return values


def temperatures(text: str) -> float | list[float]:
    """One temperature, or one per stochastic layer from the top ('1,0.9,0.8'; the last is repeated)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not (math.isfinite(v) and v >= 0) for v in values) or not any(values):
        raise argparse.ArgumentTypeError(f"expected a temperature, or temperatures separated by ',' (numbers 0 or "
                                         f"more, not all 0), got '{text}'")
    return values[0] if len(values) == 1 else values


def number(cast, ok, wanted: str, kind: str):
    """An argparse type: `cast` the text, and keep it when `ok` holds, else say what was wanted."""
    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got '{text}'") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{text}'")
        return v
    return parse


def names(allowed: tuple[str, ...]):
    """An argparse type: 'none' (the first of ``allowed``), or some of the others separated by commas."""
    def parse(text: str):
        parts = [t.strip() for t in text.split(",") if t.strip()]
        if text != allowed[0] and (not parts or any(p not in allowed[1:] for p in parts)):
            raise argparse.ArgumentTypeError(f"expected {allowed[0]} or some of {', '.join(allowed[1:])} separated "
                                             f"by commas, got '{text}'")
        return ",".join(dict.fromkeys(parts))
    return parse


positive_int = number(int, lambda v: v > 0, "a positive integer", "a positive integer")
positive_float = number(float, lambda v: v > 0, "a positive number", "a number")
nonneg_float = number(float, lambda v: v >= 0, "a non-negative number", "a number")
nonneg_int = number(int, lambda v: v >= 0, "a non-negative integer", "an integer")
probability = number(float, lambda v: 0 < v < 1, "a number between 0 and 1", "a number")

TYPES = {"str": str, "int": int, "float": float, "int+": positive_int, "float+": positive_float,
         "int0+": nonneg_int, "float0+": nonneg_float, "ints": ints, "sizes": sizes, "range": span}

#: the help sections of `vaekit train`, in order
GROUPS = ("data", "text", "audio", "sequence", "model", "training", "objectives", "disentangling")


def train_fields():
    """(option name, section, field) of every config field the command line sets."""
    for section, klass in SECTIONS:
        for f in dataclasses.fields(klass):
            if f.metadata.get("cli", True):
                yield f.metadata.get("flag") or f.name, section, f


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, in help sections; every default is None (not given), so a
    config file's value stays unless the option is given."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for dest, section, f in train_fields():
        meta = f.metadata
        group = groups[meta.get("group") or {"train": "training"}.get(section, section)]
        text = meta.get("help") or ""
        text = text() if callable(text) else text
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if "default" not in text and default is not None and default is not False:
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            text = f"{text} (default {shown})"
        kwargs = {"dest": dest, "help": text or None}
        if meta.get("parse") == "flag":
            kwargs.update(action="store_const", const=True)
        else:
            kwargs["type"] = TYPES[meta.get("parse", "str")] if meta.get("parse") != "names" else names(choices_of(f))
            if choices_of(f) is not None and meta.get("parse") != "names":
                kwargs["choices"] = choices_of(f)
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        group.add_argument("--" + dest.replace("_", "-"), **kwargs)


def apply_flags(config: Config, args) -> Config:
    """Set each training option given on the command line over ``config`` (in place)."""
    for dest, section, f in train_fields():
        value = getattr(args, dest, None)
        if value is not None:
            setattr(getattr(config, section), f.name, value)
    return config


def given_flags(args, but=()) -> list[str]:
    """The training options given on the command line, as typed (``--latent``), except ``but``."""
    return [f"--{dest.replace('_', '-')}" for dest, _, _ in train_fields()
            if dest not in but and getattr(args, dest, None) is not None]
