"""--compile: the training step and the decoder passes compiled where a compiler works, the
eager code where it does not, and the same weights and checkpoints either way."""

import pytest
import torch

import vaekit
from vaekit.compiling import Compiled, compiler_missing
from vaekit.errors import VaekitError
from test_text import make_names

NO_COMPILER = compiler_missing(torch.device("cpu"))


def digits_config(**train):
    cfg = vaekit.Config()
    cfg.model.latent, cfg.model.hidden = 4, [32]
    cfg.train.epochs, cfg.train.batch_size = 2, 64
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_without_a_compiler_auto_says_so_and_on_is_refused(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))      # no g++, c++ or clang++ on it
    monkeypatch.delenv("CXX", raising=False)
    assert compiler_missing(torch.device("cpu")).startswith("no C++ compiler")
    rc, out, err = cli("train", "--epochs", "1", "--latent", "2", "--hidden", "16", "--compile", "auto",
                       "--out", tmp_path / "auto")
    assert rc == 0
    assert "step   not compiled: no C++ compiler" in out
    rc, out, err = cli("train", "--epochs", "1", "--latent", "2", "--compile", "on", "--out", tmp_path / "on")
    assert rc == 2
    assert "--compile on: this run's training step cannot be compiled: no C++ compiler" in err
    assert len(err.strip().splitlines()) == 1
    rc, out, err = cli("evaluate", tmp_path / "auto", "--k", "5", "--compile", "on")
    assert rc == 2 and "--compile on: this model's decoder passes cannot be compiled" in err


def test_short_runs_and_recurrent_networks_are_not_compiled(tmp_path, cli):
    rc, out, _ = cli("train", "--epochs", "1", "--latent", "2", "--hidden", "16", "--out", tmp_path / "short")
    assert rc == 0
    assert "step   not compiled" in out
    names = make_names(tmp_path / "names.txt", n=120)
    rc, _, err = cli("train", "--data", names, "--epochs", "1", "--compile", "on", "--out", tmp_path / "text")
    assert rc == 2 and "its recurrent network runs step by step" in err


def test_a_failed_compile_goes_on_eagerly_in_one_line(monkeypatch, capsys):
    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("InductorError: the compiler broke\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    f = Compiled(lambda a: a * 2, "the test function")
    assert f(torch.ones(2)).tolist() == [2.0, 2.0]
    assert f(torch.ones(1)).tolist() == [2.0]          # eager from then on, without trying again
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["note: compiling the test function failed (InductorError: the compiler broke); it goes on "
                   "without compiling (--compile off skips the attempt)."]
    with pytest.raises(VaekitError, match="--compile on: compiling the test function failed"):
        Compiled(lambda a: a, "the test function", strict=True)(torch.ones(1))


@pytest.mark.skipif(NO_COMPILER is not None, reason=f"torch.compile cannot work here: {NO_COMPILER}")
def test_compiled_training_keeps_the_weights_checkpoints_and_resume(tmp_path, cli):
    """A compiled run learns what the eager one learns, writes the same files, resumes eagerly;
    a compiled evaluation gives the eager one's estimate."""
    compiled = vaekit.train(digits_config(compile="on"), out=tmp_path / "compiled", quiet=True, pictures=False)
    eager = vaekit.train(digits_config(compile="off"), out=tmp_path / "eager", quiet=True, pictures=False)
    a, b = compiled.model.state_dict(), eager.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)
    c, e = compiled.metrics[-1], eager.metrics[-1]
    assert float(c["valid_elbo"]) == pytest.approx(float(e["valid_elbo"]), abs=0.05)
    rc, out, _ = cli("train", "--resume", tmp_path / "compiled", "--epochs", "3", "--compile", "off")
    assert rc == 0 and "not compiled (--compile off)" in out
    assert len(vaekit.Run.load(tmp_path / "compiled").metrics) == 3
    x = eager.data.test[:16]
    torch.manual_seed(0)
    plain = vaekit.evaluate(eager.model, x, k=64, quiet=True, compile="off")
    torch.manual_seed(0)
    fused = vaekit.evaluate(eager.model, x, k=64, quiet=True, compile="on")
    assert fused["compiled"] and not plain["compiled"]
    assert fused["nll_nats"] == pytest.approx(plain["nll_nats"], abs=0.05)
    assert eager.model.scorer is None                  # the compiled pass does not outlive the evaluation



def test_auto_leaves_convolutions_on_a_cpu_eager_and_on_compiles_them():
    from vaekit.model import Objective, build_model
    from vaekit.train.accel import compile_plan

    cfg = vaekit.Config()
    cfg.model.net, cfg.model.latent = "conv", 2
    model = build_model(cfg.model, {"shape": [1, 8, 8], "value": "binary", "levels": None})
    objective = Objective.from_config(cfg.train, 10, 100, model)
    cpu = torch.device("cpu")
    compiling, said = compile_plan(cfg, model, objective, cpu, False, 10 ** 6)
    assert not compiling
    assert said == ("not compiled: " + (NO_COMPILER or "compiled convolutions ran slower than eager ones on a "
                                        "CPU (--compile on compiles anyway)"))
    if NO_COMPILER is None:
        cfg.train.compile = "on"
        assert compile_plan(cfg, model, objective, cpu, False, 10)[0]


def test_a_compile_that_fails_later_for_a_new_shape_also_goes_on_eagerly(monkeypatch, capsys):
    from torch._dynamo.exc import BackendCompilerFailed

    calls = []

    def flaky(fn, **kw):
        def run(a):
            calls.append(a.shape[0])
            if len(calls) > 1:
                raise BackendCompilerFailed(lambda *x: None, RuntimeError("a new shape failed"), None)
            return fn(a)
        return run

    monkeypatch.setattr(torch, "compile", flaky)
    f = Compiled(lambda a: a + 1, "the test function")
    assert f(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert f(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]        # compiling again failed: eager
    assert "note: compiling the test function failed" in capsys.readouterr().err
    g = Compiled(lambda a: a, "another")
    monkeypatch.setattr(g, "fn", lambda a: (_ for _ in ()).throw(ValueError("the model's own error")))
    g.ready = True
    with pytest.raises(ValueError, match="the model's own error"):   # not a compiler's: raised as it is
        g(torch.zeros(1))
