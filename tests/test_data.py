"""Data sources: digits, IDX, arrays, folders of images; splits and binarisation."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import blobs, write_idx
from vaekit import DataConfig, load_data
from vaekit.kinds.images import loader as images_mod


def test_digits_default_split_is_deterministic():
    a = load_data(DataConfig())
    b = load_data(DataConfig())
    assert a.shape == (1, 8, 8) and a.value == "levels" and a.levels == 17
    assert len(a.train) + len(a.valid) + len(a.test) == 1797
    assert len(a.valid) == len(a.test) == 180
    assert torch.equal(a.test, b.test) and torch.equal(a.train_labels, b.train_labels)
    assert float(a.train.min()) == 0.0 and float(a.train.max()) == 1.0
    assert a.label_names == [str(i) for i in range(10)]


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_like_mnist(tmp_path, gz):
    x, y = blobs(50, size=6)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", x[:40], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", y[:40], gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", x[40:], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", y[40:], gz)
    b = load_data(DataConfig(source=str(tmp_path)))
    assert b.shape == (1, 6, 6) and b.value == "levels" and b.levels == 256
    assert len(b.test) == 10 and len(b.train) + len(b.valid) == 40
    np.testing.assert_allclose(b.test.numpy()[:, 0], x[40:] / 255.0, atol=1e-6)
    assert b.test_labels.tolist() == y[40:].tolist()


def test_single_idx_file(tmp_path):
    x, _ = blobs(30, size=6)
    f = write_idx(tmp_path / "imgs.idx3-ubyte.gz", x, gz=True)
    b = load_data(DataConfig(source=str(f)))
    assert b.shape == (1, 6, 6) and len(b.train) + len(b.valid) + len(b.test) == 30


def test_fashion_mnist_name_uses_the_debian_folder(tmp_path, monkeypatch):
    x, y = blobs(20, size=4)
    for stem, sl in (("train", slice(0, 15)), ("t10k", slice(15, 20))):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", x[sl], gz=True)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", y[sl], gz=True)
    monkeypatch.setattr(images_mod, "FASHION_MNIST_DIR", tmp_path)
    b = load_data(DataConfig(source="fashion-mnist"))
    assert len(b.test) == 5 and b.label_names[9] == "Ankle boot"


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "flat"])
def test_array_layouts(tmp_path, layout):
    x, y = blobs(40, size=8)
    if layout == "nhwc":
        x = np.repeat(x[..., None], 3, axis=-1)
    if layout == "flat":
        x = x.reshape(40, 64)
    f = tmp_path / "a.npz"
    np.savez(f, X=x, y=y)
    b = load_data(DataConfig(source=str(f)))
    assert b.shape == ((3, 8, 8) if layout == "nhwc" else (1, 8, 8))
    assert b.train_labels is not None


def test_flat_array_with_shape(tmp_path):
    x = np.random.default_rng(0).random((30, 2 * 12)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    b = load_data(DataConfig(source=str(tmp_path / "a.npy"), shape=[2, 12]))
    assert b.shape == (1, 2, 12) and b.value == "continuous"


def test_directory_of_split_arrays_like_binarized_mnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("valid", 10), ("test", 10)):
        np.savez(tmp_path / f"{split}.npz", X=(rng.random((n, 16)) > 0.5).astype(np.uint8))
    b = load_data(DataConfig(source=str(tmp_path)))
    assert b.value == "binary" and b.shape == (1, 4, 4)
    assert (len(b.train), len(b.valid), len(b.test)) == (30, 10, 10)


def test_image_folder_with_labels_grey_and_rgb(tmp_path):
    x, y = blobs(12, size=10)
    for i, (img, lab) in enumerate(zip(x, y)):
        d = tmp_path / f"class{lab}"
        d.mkdir(exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    b = load_data(DataConfig(source=str(tmp_path), image_size=[6]))
    assert b.shape == (1, 6, 6) and b.label_names == ["class0", "class1", "class2", "class3"]
    Image.fromarray(np.zeros((10, 10, 3), np.uint8) + 100).save(tmp_path / "class0" / "rgb.jpg")
    b = load_data(DataConfig(source=str(tmp_path)))
    assert b.shape == (3, 10, 10)


def test_binarisation_modes():
    grey = load_data(DataConfig())
    thr = load_data(DataConfig(binarize="threshold"))
    assert thr.value == "binary" and torch.equal(thr.test, (grey.test > 0.5).float())
    s1, s2 = load_data(DataConfig(binarize="static")), load_data(DataConfig(binarize="static"))
    assert torch.equal(s1.train, s2.train) and set(s1.train.unique().tolist()) == {0.0, 1.0}
    dyn = load_data(DataConfig(binarize="dynamic"))
    assert dyn.dynamic and dyn.value == "binary"
    assert torch.equal(dyn.train, grey.train)             # probabilities, drawn per batch
    assert set(dyn.test.unique().tolist()) == {0.0, 1.0}  # a fixed draw for evaluation
