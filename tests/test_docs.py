"""The worked example in docs/example.md runs as it is written."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "example.md"


def test_the_worked_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    scope = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
    out = capsys.readouterr().out
    assert "NLL" in out and "example-tcvae" in out and "train.objective" in out
    for f in ("runs/example-plain/samples.png", "runs/example-plain/traversal.png", "runs/example-compare.html"):
        assert (tmp_path / f).stat().st_size > 0
