"""Image readers on small files the tests write (IDX, CIFAR-10 batches, image folders), and the image source."""

import gzip
import math
import pickle

import numpy as np
import pytest
import torch

from straightflow.data.image_files import read_cifar10, read_idx, read_image_folder
from straightflow.data.images import resolve_images
from straightflow.data.source import resolve_data


def write_idx(path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_raw_and_gzip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / "x.idx", images, compress=compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), images)
    ints = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    write_idx(tmp_path / "i.idx", ints, code=0x0C, compress=compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), ints)


def test_idx_bad_magic_truncation_and_missing_file_are_clear_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="requires 20"):
        read_idx(tmp_path / "short")
    with pytest.raises(ValueError, match="does not exist"):
        read_idx(tmp_path / "nope")


def write_mnist(folder, n_train=6, n_test=3, compress=True):
    rng = np.random.default_rng(1)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  compress=compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10,
                  compress=compress)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_data_dir_gives_images_in_minus_one_one(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    data = resolve_data("fashion-mnist", data_dir=str(tmp_path), conditional=True)
    assert data.shape == (1, 28, 28) and data.num_classes == 10 and data.train.shape[0] == 6
    x, label = data.sample_labeled(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28) and label.shape == (8,)
    assert x.min() >= -1 and x.max() <= 1
    assert data.heldout(3).shape == (3, 1, 28, 28)


def test_mnist_missing_files_name_the_file_and_the_docs(tmp_path):
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\[\.gz\] not found.*docs/images.md"):
        resolve_data("mnist", data_dir=str(tmp_path / "empty"))


def write_cifar(folder, n=4):
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_python_batches_read_channel_major(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = read_cifar10(tmp_path, train=True)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.tolist() == [0, 1, 2, 3] * 5
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f)[b"data"][0]
    np.testing.assert_array_equal(x[0, 1], first[1024:2048].reshape(32, 32))  # green plane
    data = resolve_data("cifar10", data_dir=str(tmp_path), hflip=True)
    assert data.shape == (3, 32, 32) and data.test.shape[0] == 4


def test_cifar10_malformed_or_foreign_batches_are_refused(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"images": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(ValueError, match="lack 'data' and 'labels'"):
        read_cifar10(tmp_path, train=False)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(math.sqrt, f)  # any callable a pickle could smuggle in
    with pytest.raises(ValueError, match="refusing to load"):
        read_cifar10(tmp_path, train=False)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="data_batch_3 not found"):
        read_cifar10(tmp_path, train=True)


def write_png(path, w, h, colour):
    from PIL import Image

    Image.new("RGB", (w, h), colour).save(path)


def test_image_folder_classes_from_subfolders_resized_and_centre_cropped(tmp_path):
    for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for i in range(3):
            write_png(tmp_path / name / f"{i}.png", 12 + 4 * i, 8, colour)
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    images, labels, classes = read_image_folder(tmp_path, size=4)
    assert images.shape == (6, 3, 4, 4) and classes == ["cats", "dogs"]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert (images[0, 0] == 255).all() and (images[3, 2] == 255).all()
    data = resolve_data(f"folder:{tmp_path}", image_size=4, conditional=True)
    assert data.shape == (3, 4, 4) and data.num_classes == 2 and data.class_names == ["cats", "dogs"]


def test_flat_image_folder_is_unlabelled_and_bad_images_are_errors(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.jpg", 6, 6, (i * 50, 0, 0))
    images, labels, classes = read_image_folder(tmp_path, size=6)
    assert images.shape == (3, 3, 6, 6) and labels is None and classes == []
    with pytest.raises(ValueError, match="no labels"):
        resolve_images(f"folder:{tmp_path}", image_size=6, conditional=True)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image_folder(tmp_path, size=6)


def test_digits_are_the_builtin_default_with_a_fixed_split():
    data = resolve_data("digits", conditional=True)
    assert data.shape == (1, 8, 8) and data.levels == 17 and data.num_classes == 10
    assert data.train.shape[0] + data.test.shape[0] == 1797
    x = data.sample(64, torch.Generator().manual_seed(0))
    assert x.min() == -1 and x.max() == 1
    torch.testing.assert_close(data.heldout(50, seed=3), resolve_images("digits").heldout(50, seed=3))
    with pytest.raises(ValueError, match="horizontal flips"):
        resolve_images("digits", hflip=True)


def test_flips_and_dequantisation(tmp_path):
    (tmp_path / "a").mkdir()
    from PIL import Image

    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 0] = 255  # a white left column
    for i in range(2):
        Image.fromarray(img).save(tmp_path / "a" / f"{i}.png")
    source = resolve_images(f"folder:{tmp_path}", image_size=4, hflip=True)
    flipped = source.sample(200, torch.Generator().manual_seed(0))
    left = (flipped[:, 0, :, 0] > 0).all(1)
    assert 50 < int(left.sum()) < 150 and bool(((flipped[:, 0, :, 3] > 0).all(1) == ~left).all())
    deq = resolve_images(f"folder:{tmp_path}", image_size=4, dequantize=True).sample(50)
    assert deq.min() > -1 and deq.max() < 1
    assert not torch.isin(deq, torch.tensor([-1.0, 1.0])).any()


def test_dequantised_pixels_share_the_likelihood_command_s_bins():
    """Source dequantisation and straightflow.density.dequantize put level k in the same bin [2k/L-1, 2(k+1)/L-1)."""
    from straightflow.density import bits_per_dim, dequantize

    data = resolve_images("digits")
    k = data.train[:200]
    lo, hi = 2 * k / 17 - 1, 2 * (k + 1) / 17 - 1
    g = torch.Generator().manual_seed(0)
    for x in (data.to_pixels(k, g, dequantize=True), dequantize(data.to_pixels(k), 17, generator=g)):
        assert bool(((x >= lo) & (x < hi + 1e-6)).all())
    uniform = torch.full((2,), 64 * math.log(2.0))  # NLL of U(-1, 1)^64: log2(L) bits per dim
    torch.testing.assert_close(bits_per_dim(uniform, 64, 2.0, 17), torch.full((2,), math.log2(17)))
