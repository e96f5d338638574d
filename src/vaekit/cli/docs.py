"""docs/cli.md, written from the parser itself, so the option reference cannot drift from the
code: ``python -m vaekit.cli.docs docs/cli.md`` (``make docs``); a test fails when the file in
the repository differs from what this writes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import build_parser


def _option(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) if action.option_strings else f"`{action.dest}`"
    if action.nargs == 0 or isinstance(action, (argparse._StoreConstAction, argparse._StoreTrueAction)):
        value = ""
    elif action.choices is not None:
        value = " {" + ",".join(str(c) for c in action.choices) + "}"
    elif isinstance(action.metavar, tuple):
        value = " " + " ".join(action.metavar)
    else:
        value = " " + (action.metavar or action.dest.upper())
    text = (action.help or "").replace("|", "\\|")
    if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
        text = f"{text} (default {action.default})".strip()
    return f"- {names}{value.replace('|', '/')}: {text}".rstrip(": ")


def cli_markdown() -> str:
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in verbs._choices_actions}
    out = ["# The `vaekit` command", "",
           "Written by `make docs` from the command's parser (`python -m vaekit.cli.docs docs/cli.md`); do not",
           "edit by hand. `vaekit VERB --help` shows the same.", ""]
    out += [f"- [`vaekit {name}`](#vaekit-{name}): {helps[name]}" for name in verbs.choices]
    for name, sub in verbs.choices.items():
        out += ["", f"## vaekit {name}", "", sub.description or helps[name], ""]
        for group in sub._action_groups:
            actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            title = {"positional arguments": "arguments", "options": "options"}.get(group.title, group.title)
            out += [f"### {title}", ""] + [_option(a) for a in actions] + [""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = cli_markdown()
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
