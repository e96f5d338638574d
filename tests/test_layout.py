"""The layout shows the architecture, and the documentation says what the code does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "vaekit"

# Imports run one way, from the verbs down to the math: a module may import its own layer and
# the layers below it.
LAYERS = {"version": 0, "memory": 0, "compiling": 0, "threads": 0, "errors": 0, "progress": 0, "tokens": 0, "checkpoint": 0, "kinds": 1, "model": 1, "eval": 2,
          "config": 3, "run": 4, "report": 4, "serve": 4, "export": 3, "score": 3, "traversal": 3, "forecast": 1, "codeprior": 2, "compare": 4, "tracking": 3, "plugins": 0, "sweep": 6, "train": 5, "cli": 6, "__init__": 7, "__main__": 7}
# the one import upwards: build_model resolves an "auto" of a config made in Python (inside the function)
ALLOWED_UP = {("model/vae.py", "config")}


def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    """The top-level vaekit parts a module imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(SRC).parent.parts
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            target = list(base) + (node.module.split(".") if node.module else [])
            if target:
                yield target[0]
            else:  # `from . import x` at the top of the package: a part, or a name of vaekit/__init__.py
                yield from (a.name if a.name in LAYERS else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vaekit."):
            yield node.module.split(".")[1]


def test_imports_run_one_way_with_no_cycles():
    wrong = []
    for path in SRC.rglob("*.py"):
        source = _part(path)
        for target in set(_imports(path)):
            if target not in LAYERS or target == source:
                continue
            up = LAYERS[target] > LAYERS[source]
            if up and (str(path.relative_to(SRC)), target) not in ALLOWED_UP:
                wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, wrong
    assert set(LAYERS) >= {_part(p) for p in SRC.rglob("*.py")}, "a new part of the package needs a layer"


@pytest.mark.parametrize("where", ["cli", "serve.py", "report.py", "run.py", "train", "config.py"])
def test_only_the_kinds_know_the_kinds(where):
    files = [SRC / where] if where.endswith(".py") else list((SRC / where).rglob("*.py"))
    for f in files:
        text = f.read_text()
        for kind in ('"image"', '"text"', '"audio"'):
            assert f"modality == {kind}" not in text and f"modality != {kind}" not in text, f
        if f.name != "config.py":  # (config.py compares it with "auto", which is no kind)
            assert "modality ==" not in text, f


def test_readme_is_short_and_its_lines_are_too():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200 and max(map(len, lines)) <= 200


def test_the_option_reference_is_generated_and_up_to_date():
    from vaekit.cli.docs import cli_markdown

    assert (ROOT / "docs" / "cli.md").read_text() == cli_markdown(), "docs/cli.md is out of date: run `make docs`"
    for option in ("--latent", "--prior", "--objective", "--k", "--between", "--batch-rows"):
        assert f"`{option}`" in cli_markdown()
