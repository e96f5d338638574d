"""vaekit as a library: data given in memory, and the runs trained on them."""

import numpy as np
import pytest
import torch

import vaekit
from vaekit.errors import VaekitError


def images(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 8, 8)) > 0.5).astype(np.float32), rng.integers(0, 3, n)


def small(**train):
    cfg = vaekit.Config()
    cfg.model.latent, cfg.model.hidden = 3, [32]
    cfg.train.epochs = 2
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_train_on_arrays_records_it_and_asks_for_them_again(tmp_path, cli):
    x, y = images()
    run = vaekit.train(small(), out=tmp_path / "r", quiet=True, data=(x, y))
    assert run.config.data.source == vaekit.kinds.IN_MEMORY and run.info["classes"] == 3
    assert run.data.train.shape == (240, 1, 8, 8)              # the run returned by train has its data
    again = vaekit.Run.load(tmp_path / "r")
    with pytest.raises(VaekitError, match="trained on data given in memory"):
        again.evaluate(k=2)
    rc, _, err = cli("evaluate", tmp_path / "r", "--k", "2", "--quiet")
    assert rc == 2 and "given in memory" in err and "Traceback" not in err
    rc, out, _ = cli("sample", tmp_path / "r", "-n", "4", "--out", tmp_path / "s.png")   # needs no data
    assert rc == 0
    given = vaekit.Run.load(tmp_path / "r", data=(x, y))
    assert torch.equal(given.data.test, run.data.test.cpu())  # the same split, as the data were read the same way
    assert np.isfinite(given.evaluate(k=2, write=False)["nll_nats"])
    resumed = vaekit.resume(tmp_path / "r", epochs=3, quiet=True, data=(x, y), pictures=False)
    assert len(resumed.metrics) == 3


def test_train_on_a_torch_dataset_and_a_dict_of_splits(tmp_path):
    x, y = images()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    run = vaekit.train(small(), out=tmp_path / "d", quiet=True, data=ds, pictures=False)
    assert run.info["sizes"] == {"train": 240, "valid": 30, "test": 30} and run.info["classes"] == 3
    run = vaekit.train(small(), out=tmp_path / "s", quiet=True, pictures=False,
                       data={"train": torch.from_numpy(x[:200]), "test": x[200:]})
    assert run.info["sizes"]["test"] == 100 and run.info["sizes"]["train"] + run.info["sizes"]["valid"] == 200


@pytest.mark.parametrize("data,message", [
    ({"training": np.zeros((10, 4, 4))}, "a dict of splits needs 'train'"),
    (np.array([["a"]] * 10), "must be numbers"),
    ((np.zeros((10, 4, 4)), np.zeros(9)), "10 images but 9 labels"),
])
def test_bad_data_in_memory_is_one_sentence(data, message, tmp_path):
    with pytest.raises(VaekitError, match=message):
        vaekit.train(small(), out=tmp_path / "x", quiet=True, data=data)


def test_an_array_as_the_source_is_one_sentence(tmp_path):
    cfg = small()
    cfg.data.source = np.zeros((10, 4, 4))
    with pytest.raises(VaekitError, match=r"not a ndarray; give data in memory as vaekit.train\(cfg, data=...\)"):
        vaekit.train(cfg, out=tmp_path / "x", quiet=True)


PARTS = '''
import math

from torch import nn

import vaekit
from vaekit.model.nets import GaussianHead


class Encoder(nn.Module):
    """A user's encoder: features ``hidden(x, c)``, then a GaussianHead to (mu, log-variance)."""

    def __init__(self, d, latent):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, 24), nn.Tanh())
        self.head = GaussianHead(24, latent)

    def hidden(self, x, c=None):
        return self.body(x)


class Decoder(nn.Module):
    def __init__(self, latent, shape, n_params):
        super().__init__()
        self.out_shape = (n_params, *shape)
        self.net = nn.Linear(latent, math.prod(self.out_shape))

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.out_shape)


@vaekit.register_net("NAME", "a user's own network")
def build(model_cfg, info, z_enc, z_in, classes, lik):
    shape = tuple(info["shape"])
    return Encoder(math.prod(shape), z_enc), Decoder(z_in, shape, lik.n_params)
'''


def test_a_users_network_is_chosen_by_name_saved_and_reloaded(tmp_path, monkeypatch, cli):
    import importlib
    import shutil
    import sys

    (tmp_path / "my_vae_parts.py").write_text(PARTS.replace("NAME", "users-net"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VAEKIT_PLUGINS", "my_vae_parts")
    # the command line imports VAEKIT_PLUGINS' modules before it reads its options
    rc, _, err = cli("train", "--net", "users-net", "--epochs", "2", "--latent", "3", "--quiet", "--out", tmp_path / "r")
    assert rc == 0, err
    assert "model.net: my_vae_parts" in (tmp_path / "r" / "config.yaml").read_text()
    # another process: the module is imported again because the run names it
    sys.modules.pop("my_vae_parts")
    vaekit.NETS.entries.pop("users-net")
    monkeypatch.delenv("VAEKIT_PLUGINS")
    run = vaekit.Run.load(tmp_path / "r")
    assert type(run.model.encoder).__name__ == "Encoder" and "users-net" in vaekit.NETS
    assert run.model.sample(4).shape == (4, 1, 8, 8)
    # and where it cannot be imported, one sentence says which module the run needs
    sys.modules.pop("my_vae_parts")
    vaekit.NETS.entries.pop("users-net")
    shutil.move(tmp_path / "my_vae_parts.py", tmp_path / "elsewhere.py")
    importlib.invalidate_caches()
    with pytest.raises(VaekitError, match="model.net 'users-net' is registered by the module 'my_vae_parts', but the "
                                          "module 'my_vae_parts' cannot be imported"):
        vaekit.Run.load(tmp_path / "r")
    monkeypatch.setenv("VAEKIT_PLUGINS", "no_such_vaekit_plugin")
    rc, _, err = cli("info", tmp_path / "r")
    assert rc == 2 and "VAEKIT_PLUGINS names it" in err and "Traceback" not in err
