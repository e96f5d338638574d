"""Text VAEs: data, vocabulary, recurrent networks, generation, training that does not collapse."""

import json
import math

import pytest
import torch

from vaekit import Config, Run, train
from vaekit.config import DataConfig
from vaekit.kinds import load_data
from vaekit.kinds.text.loader import EOS, PAD, UNK, Vocab
from vaekit.model.likelihoods import CategoricalLikelihood
from vaekit.model.nets import RecurrentDecoder

SYLLABLES = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi"]


def make_names(path, n=400, seed=0):
    """Made-up names of 1-4 syllables: structure a latent can carry (length, first syllable)."""
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        k = int(torch.randint(1, 5, (1,), generator=g))
        lines.append("".join(SYLLABLES[int(i)] for i in torch.randint(0, len(SYLLABLES), (k,), generator=g)))
    path.write_text("\n".join(lines) + "\n")
    return path


def text_config(source, epochs=4, **model):
    cfg = Config()
    cfg.data.source = str(source)
    cfg.model.latent = 4
    cfg.model.embedding, cfg.model.rnn_hidden = 16, 32
    for k, v in model.items():
        setattr(cfg.model, k, v)
    cfg.train.epochs, cfg.train.batch_size = epochs, 32
    return cfg


def test_lines_become_tokens_with_a_vocabulary(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("abc\n\n  \nabd\n".encode() + b"\xff\xfe bad\n" + ("x" * 50 + "\n").encode() + b"ba\n" * 30)
    cfg = DataConfig(source=str(f), max_length=10)
    b = load_data(cfg)
    assert b.modality == "text" and b.value == "tokens"
    assert b.meta["skipped"] == {"empty": 2, "too_long": 1, "bad_encoding": 1}
    assert "2 empty, 1 over 10 tokens, 1 not UTF-8" in b.describe()
    all_rows = torch.cat([b.train, b.valid, b.test])
    assert all_rows.shape == (32, 4) and all_rows.dtype == torch.long   # 'abc' + </s>
    assert ((all_rows == EOS).sum(1) == 1).all()
    lines = sorted(b.vocab.decode(r) for r in all_rows)
    assert lines.count("ba") == 30 and "abc" in lines and "abd" in lines
    assert b.vocab.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]


def test_word_tokens_unknown_words_and_separate_splits(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat .\nthe dog sat .\nthe cat ran .\n" * 5)
    (tmp_path / "valid.txt").write_text("the cat sat .\n")
    (tmp_path / "test.txt").write_text("the zebra sat .\n")
    b = load_data(DataConfig(source=str(tmp_path), tokens="word"))
    assert b.train.shape[0] == 15 and b.valid.shape[0] == 1 and b.test.shape[0] == 1
    assert b.test[0, 1].item() == UNK
    assert b.vocab.decode(b.test[0]) == "the <unk> sat ."
    assert b.vocab.encode("the dog ran") == [b.vocab.index[w] for w in ("the", "dog", "ran")]


def test_binary_file_is_refused_with_its_name(tmp_path):
    f = tmp_path / "blob.txt"
    f.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(Exception, match="blob.txt: not a text file"):
        load_data(DataConfig(source=str(f)))


def test_categorical_likelihood_ignores_padding():
    lik = CategoricalLikelihood((3,), vocab=6)
    logits = torch.randn(2, 6, 3)
    x = torch.tensor([[4, EOS, PAD], [5, 4, EOS]])
    lp = lik.log_prob(logits, x)
    logp = torch.log_softmax(logits, 1)
    assert lp[0].item() == pytest.approx((logp[0, 4, 0] + logp[0, EOS, 1]).item(), abs=1e-5)
    assert lik.dims(x).tolist() == [2, 3]


def test_decoder_is_causal_and_generation_methods_agree_on_shape():
    torch.manual_seed(0)
    dec = RecurrentDecoder(vocab=9, latent=3, length=6, embedding=8, hidden=12).eval()
    z = torch.randn(4, 3)
    x = torch.randint(4, 9, (4, 6))
    x2 = x.clone()
    x2[:, 3:] = 5
    # changing tokens from position 3 on leaves the logits of positions 0-3 unchanged
    assert torch.allclose(dec(z, x)[..., :4], dec(z, x2)[..., :4], atol=1e-6)
    for method in ("greedy", "sample", "beam"):
        out = dec.generate(z, method=method, beam=3)
        assert out.shape == (4, 6)
        ends = (out == EOS).float().argmax(1)
        assert ((out == EOS).sum(1) == 1).all(), method          # exactly one end of line
        for r in range(4):
            assert (out[r, ends[r] + 1:] == PAD).all()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_many_latents_a_line_score_as_the_lines_repeated(cell):
    """The k-sample pass (the line's input projection once, the latent's once a sample) gives
    the logits of the lines repeated k times through the network itself."""
    torch.manual_seed(0)
    dec = RecurrentDecoder(vocab=30, latent=8, length=12, embedding=16, hidden=32, cell=cell).eval()
    x = torch.randint(1, 30, (3, 12))
    x[1, 7:] = PAD
    z = torch.randn(5 * 3, 8)
    with torch.no_grad():
        fast = dec(z, x, 5)
        plain = dec(z, x.repeat(5, 1))
    assert fast.shape == (15, 30, 12)
    assert torch.allclose(fast, plain, atol=1e-5)


def test_nll_batches_of_lines_cut_to_their_longest_score_the_same(tmp_path):
    """evaluate groups lines of similar lengths and cuts each batch after its longest line:
    the same log-weights as the padded lines, and the same estimate within its noise."""
    cfg = text_config(make_names(tmp_path / "names.txt"), epochs=1)
    run = train(cfg, out=tmp_path / "run", quiet=True)
    model = run.model.eval()
    test = run.data.test
    x = test[torch.argsort((test != PAD).sum(1))[:12]]    # short lines: padding after the longest
    cut = model.likelihood.trim(x)
    assert cut.shape[1] == int((x != PAD).sum(1).max()) < x.shape[1]
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.log_weights(x, 20)
        torch.manual_seed(1)
        b = model.log_weights(cut, 20)
    assert torch.allclose(a, b, atol=1e-4)
    from vaekit import evaluate

    torch.manual_seed(2)
    sorted_ = evaluate(model, x, k=200, quiet=True)
    torch.manual_seed(2)
    one_by_one = [evaluate(model, x[i:i + 1], k=200, quiet=True)["nll_nats"] for i in range(12)]
    assert sorted_["nll_nats"] == pytest.approx(sum(one_by_one) / 12, abs=0.05)


def test_beam_search_finds_a_line_at_least_as_likely_as_greedy():
    torch.manual_seed(1)
    dec = RecurrentDecoder(vocab=7, latent=2, length=5, embedding=6, hidden=10).eval()
    z = torch.randn(16, 2)
    lik = CategoricalLikelihood((5,), 7)

    def score(seqs):
        return lik.log_prob(dec(z, seqs), seqs)

    greedy, beam = dec.generate(z, "greedy"), dec.generate(z, "beam", beam=6)
    assert (greedy[:, 0] != EOS).all() and (beam[:, 0] != EOS).all()   # never an empty line
    # beam search ranks by log-probability over the length penalty of Wu et al. (2016)
    ranked = lambda s: score(s) / ((5.0 + lik.dims(s)) / 6.0) ** 0.6  # noqa: E731
    assert (ranked(beam) >= ranked(greedy) - 1e-4).all()
    assert (ranked(beam) > ranked(greedy) + 1e-3).any()


def test_word_dropout_and_inputless_inputs():
    dec = RecurrentDecoder(vocab=9, latent=2, length=5, word_dropout=1.0)
    x = torch.tensor([[4, 5, 6, EOS, PAD]])
    dec.train()
    assert dec.inputs(x).tolist() == [[1, UNK, UNK, UNK, UNK]]
    dec.eval()
    assert dec.inputs(x).tolist() == [[1, 4, 5, 6, EOS]]
    inputless = RecurrentDecoder(vocab=9, latent=2, length=5, inputless=True).eval()
    assert inputless.inputs(x).tolist() == [[1, UNK, UNK, UNK, UNK]]


def test_training_lowers_the_loss_and_free_bits_keep_kl_above_zero(tmp_path):
    src = make_names(tmp_path / "names.txt")
    cfg = text_config(src, epochs=8)
    cfg.train.free_bits, cfg.model.word_dropout, cfg.train.lr = 0.5, 0.25, 3e-3
    run = train(cfg, out=tmp_path / "run", quiet=True, pictures=False)
    m = run.metrics
    assert m[-1]["train_elbo"] > m[0]["train_elbo"] + 2.0
    assert m[-1]["valid_kl"] > 0.5
    ev = run.evaluate(k=50, quiet=True)
    assert ev["kl_nats"] > 0.5 and ev["active_units"] >= 1
    assert ev["nll_nats"] <= -ev["elbo_nats"] + 1e-3  # the IS estimate is at least as tight as the ELBO
    assert ev["perplexity"] == pytest.approx(math.exp(ev["nll_nats"] * ev["n"] / ev["tokens"]), rel=1e-6)
    assert json.loads((run.path / "vocab.json").read_text())["kind"] == "char"


def test_text_cli_end_to_end(tmp_path, cli):
    src = make_names(tmp_path / "names.txt", 200)
    rc, out, err = cli("train", "--data", src, "--epochs", "2", "--latent", "3", "--embedding", "8",
                       "--rnn-hidden", "16", "--free-bits", "0.2", "--quiet", "--out", tmp_path / "r")
    assert rc == 0, err
    r = tmp_path / "r"
    for f in ("samples.txt", "reconstructions.txt", "interpolations.txt", "latent_map.png"):
        assert (r / "samples" / f).stat().st_size > 0
    assert "beam search" in (r / "report.html").read_text()
    for method in ("greedy", "sample", "beam"):
        rc, out, err = cli("sample", r, "-n", "4", "--method", method, "--temperature", "0.8")
        assert rc == 0 and len(out.strip().splitlines()) == 4, (method, out, err)
    rc, out, _ = cli("reconstruct", r, "-n", "3")
    assert rc == 0 and out.count("->") == 3
    rc, out, _ = cli("interpolate", r, "--between", "kalo", "mirasute", "--steps", "5")
    assert rc == 0 and len(out.strip().splitlines()) == 5
    rc, out, _ = cli("evaluate", r, "--k", "20", "--quiet")
    assert rc == 0 and "perplexity" in out and "nats per line" in out
    rc, out, _ = cli("traverse", r, "--dims", "0,2", "--steps", "3", "--from", "1")
    lines = out.strip().splitlines()
    assert rc == 0 and lines[0] == "# around the posterior mean of test example 1"
    assert lines[1].startswith("z0  KL") and lines[6].startswith("z2  KL") and lines[2].startswith("   -3.00  ")
    assert (r / "samples" / "traversal.txt").exists() and "Latent traversal" in (r / "report.html").read_text()
    rc, out, _ = cli("info", r)
    assert rc == 0 and "vocabulary" in out and "gru" in out
    # the run reloads without its data for sampling: vocab.json is what it needs
    src.unlink()
    rc, out, _ = cli("sample", r, "-n", "2")
    assert rc == 0 and len(out.strip().splitlines()) == 2


def test_text_run_keeps_its_vocabulary(tmp_path):
    src = make_names(tmp_path / "names.txt", 120)
    run = train(text_config(src, epochs=1), out=tmp_path / "r", quiet=True, pictures=False)
    # new characters in the data later do not change the run's encoding
    src.write_text(src.read_text() + "zzzz\n")
    again = Run.load(tmp_path / "r")
    assert again.vocab.tokens == run.vocab.tokens
    x = again.media.encode(["kalo", "qq"])
    assert x[1, 0].item() == UNK and x.shape == (2, 5)


def test_text_bad_inputs(tmp_path, cli):
    f = make_names(tmp_path / "n.txt", 50)
    rc, _, err = cli("train", "--data", f, "--net", "mlp", "--epochs", "1")
    assert rc == 2 and "n.txt" in err and "rnn" in err
    rc, _, err = cli("train", "--data", f, "--prior", "vamp", "--epochs", "1")
    assert rc == 2 and "VampPrior" in err
    rc, _, err = cli("train", "--data", f, "--max-length", "1", "--epochs", "1")
    assert rc == 2 and "no usable lines" in err
    (tmp_path / "empty.txt").write_text("\n\n")
    rc, _, err = cli("train", "--data", tmp_path / "empty.txt")
    assert rc == 2 and "empty.txt" in err
    rc, _, err = cli("train", "--data", f, "--word-dropout", "1.5")
    assert rc == 2 and "word_dropout" in err


def test_vocab_round_trip(tmp_path):
    v = Vocab.build([list("hello"), list("world")], "char")
    v.save(tmp_path / "v.json")
    w = Vocab.load(tmp_path / "v.json")
    assert w.tokens == v.tokens and w.decode(w.encode("low")) == "low"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(Exception, match="bad.json: not a vaekit vocabulary"):
        Vocab.load(tmp_path / "bad.json")


def test_text_run_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    from vaekit import resume

    src = make_names(tmp_path / "names.txt", 150)

    def cfg(epochs):
        c = text_config(src, epochs=epochs, word_dropout=0.3)
        c.train.free_bits = 0.2
        return c

    train(cfg(3), out=tmp_path / "full", quiet=True, pictures=False)
    train(cfg(2), out=tmp_path / "part", quiet=True, pictures=False)
    resume(tmp_path / "part", quiet=True, epochs=3, pictures=False)
    a = torch.load(tmp_path / "full" / "state" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "state" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_file(tmp_path / "part" / "model.safetensors").keys() == a.keys()
