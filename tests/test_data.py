"""The download layer (cache, mirror, checksum, atomic writes, offline errors, safe zips) and
the datamodules (IDX parsing of the real files, fixed splits, batching by index)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REPO

from datamodules.download import (
    ChecksumError,
    CorruptCopyWarning,
    DataError,
    DataUnavailableError,
    RemoteFile,
    extract_zip,
    fetch,
    fetch_all,
)
from datamodules.images import DigitsData, FashionMNISTData, MNISTData, read_idx, shift_and_flip
from datamodules.in_memory import TensorBatches
from datamodules.synthetic import SyntheticRegressionData

# The mirror the whole suite reads (conftest defaults it to ../shared/data), read before any
# test points LITZOO_MIRROR elsewhere.
SHARED_MIRROR = Path(os.environ["LITZOO_MIRROR"].split(":")[0])
PAYLOAD = b"litzoo test payload\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def closed_port_url(name: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An empty cache and an empty mirror of this test's own."""
    cache, mirror = tmp_path / "cache", tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    monkeypatch.setenv("LITZOO_DATA", str(cache))
    monkeypatch.setenv("LITZOO_MIRROR", str(mirror))
    return cache, mirror


def toy_file(url: str | None = None, sha256: str = PAYLOAD_SHA) -> RemoteFile:
    return RemoteFile("toy", "payload.bin", url or closed_port_url("payload.bin"), sha256)


def test_mirror_is_used_before_the_url(isolated) -> None:
    cache, mirror = isolated
    (mirror / "toy" / "payload.bin").write_bytes(PAYLOAD)
    path = fetch(toy_file())
    assert path == cache / "toy" / "payload.bin"
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))


def test_checksum_mismatch_in_the_mirror_is_refused(isolated) -> None:
    cache, mirror = isolated
    (mirror / "toy" / "payload.bin").write_bytes(PAYLOAD + b"tampered")
    with pytest.raises(ChecksumError) as err:
        fetch(toy_file())
    assert "payload.bin" in str(err.value) and "SHA-256" in str(err.value)
    assert not (cache / "toy" / "payload.bin").exists()


def test_corrupt_cached_file_is_never_reused(isolated) -> None:
    cache, mirror = isolated
    (cache / "toy").mkdir(parents=True)
    (cache / "toy" / "payload.bin").write_bytes(b"half a file")
    (mirror / "toy" / "payload.bin").write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError, match="Delete"):
        fetch(toy_file())


def test_offline_error_says_what_to_fetch_and_where(isolated) -> None:
    cache, _ = isolated
    file = toy_file()
    with pytest.raises(DataUnavailableError) as err:
        fetch_all([file])
    message = str(err.value)
    assert file.url in message
    assert str(cache / "toy" / "payload.bin") in message
    assert "LITZOO_MIRROR" in message and PAYLOAD_SHA in message


@pytest.fixture
def http_mirror(tmp_path):
    """A local http.server on 127.0.0.1 serving a directory; yields (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_over_http_is_verified_and_cached(isolated, http_mirror) -> None:
    root, base = http_mirror
    (root / "payload.bin").write_bytes(PAYLOAD)
    path = fetch(toy_file(base + "payload.bin"))
    assert path.read_bytes() == PAYLOAD
    (root / "payload.bin").unlink()  # a second fetch is served by the cache
    assert fetch(toy_file(base + "payload.bin")).read_bytes() == PAYLOAD


def test_bad_download_leaves_nothing_that_passes_for_whole(isolated, http_mirror) -> None:
    cache, _ = isolated
    root, base = http_mirror
    (root / "payload.bin").write_bytes(PAYLOAD[:100])
    with pytest.raises(ChecksumError):
        fetch(toy_file(base + "payload.bin"))
    assert list((cache / "toy").iterdir()) == []


def test_a_corrupt_copy_in_one_mirror_falls_back_to_the_next_source(
    isolated, tmp_path, monkeypatch, http_mirror
) -> None:
    cache, first = isolated
    second = tmp_path / "second-mirror"
    (second / "toy").mkdir(parents=True)
    (first / "toy" / "payload.bin").write_bytes(PAYLOAD[:-1] + b"?")
    (second / "toy" / "payload.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("LITZOO_MIRROR", f"{first}:{second}")
    with pytest.warns(CorruptCopyWarning) as warned:
        assert fetch(toy_file()).read_bytes() == PAYLOAD
    (message,) = [str(w.message) for w in warned]
    assert str(first / "toy" / "payload.bin") in message and "corrupt" in message
    assert str(second / "toy" / "payload.bin") in message  # and which copy was used
    # the URL is the last source
    (cache / "toy" / "payload.bin").unlink()
    root, base = http_mirror
    (root / "payload.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("LITZOO_MIRROR", str(first))
    with pytest.warns(CorruptCopyWarning, match="Used the good copy from http://"):
        assert fetch(toy_file(base + "payload.bin")).read_bytes() == PAYLOAD


def test_cached_files_get_the_permissions_the_umask_gives(isolated) -> None:
    _, mirror = isolated
    (mirror / "toy" / "payload.bin").write_bytes(PAYLOAD)
    previous = os.umask(0o002)
    try:
        path = fetch(toy_file())
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o664  # group-shared cache, not mkstemp's 0600


DOWNLOAD_AND_HANG = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("download", sys.argv[1])
download = sys.modules["download"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download)
download.fetch(download.RemoteFile("toy", "payload.bin", sys.argv[2], "0" * 64))
"""


def test_a_killed_download_leaves_nothing_after_the_next_good_fetch(isolated) -> None:
    """A download SIGKILLed mid-copy leaves its temporary file; the next good fetch of that
    file removes it, and leaves alone the one of a copy still in progress."""
    cache, mirror = isolated

    class Stalling(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # sends a first chunk, then nothing
            self.send_response(200)
            self.send_header("Content-Length", str(2 * len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.wfile.flush()
            threading.Event().wait(60)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/payload.bin"
    downloader = subprocess.Popen(
        [sys.executable, "-c", DOWNLOAD_AND_HANG, str(REPO / "datamodules" / "download.py"), url],
        env={**os.environ, "LITZOO_DATA": str(cache)},
    )
    try:
        deadline = time.monotonic() + 60
        while not list((cache / "toy").glob(".payload.bin.*.part")):
            assert time.monotonic() < deadline and downloader.poll() is None
            time.sleep(0.05)
    finally:
        downloader.kill()
        downloader.wait()
        server.shutdown()
        server.server_close()
    (left_behind,) = (cache / "toy").glob(".payload.bin.*.part")
    in_progress = cache / "toy" / f".payload.bin.{socket.gethostname()}.{os.getpid()}.x.part"
    in_progress.write_bytes(b"a copy this process is still making")

    (mirror / "toy" / "payload.bin").write_bytes(PAYLOAD)
    assert fetch(toy_file()).read_bytes() == PAYLOAD
    assert not left_behind.exists()
    assert sorted(p.name for p in (cache / "toy").iterdir()) == sorted(
        ["payload.bin", in_progress.name]
    )


def test_real_mirror_files_download_through_http(isolated, http_mirror) -> None:
    """The canonical Fashion-MNIST label file, served over HTTP, passes its pinned SHA-256."""
    root, base = http_mirror
    labels = FashionMNISTData.files[3]
    shutil.copy(SHARED_MIRROR / labels.relpath, root / labels.name)
    served = RemoteFile(labels.dataset, labels.name, base + labels.name, labels.sha256)
    assert read_idx(fetch(served)).shape == (10000,)


def test_zip_extraction_refuses_paths_outside_the_target(tmp_path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escaped.txt", "evil")
    with pytest.raises(DataError, match="outside"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_zip_extraction(tmp_path) -> None:
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fra-eng/fra.txt", "Go.\tVa !\n")
    out = extract_zip(archive, tmp_path / "out")
    assert (out / "fra-eng" / "fra.txt").read_text() == "Go.\tVa !\n"


def test_truncated_idx_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"\0\0\x08\x01" + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(bad)


@pytest.mark.parametrize("cls", [FashionMNISTData, MNISTData])
def test_idx_datasets_parse_the_real_files(cls) -> None:
    data = cls()
    data.prepare_data()
    data.setup("fit")
    x_train, y_train = data.splits["train"].tensors
    x_val, _ = data.splits["val"].tensors
    x_test, y_test = data.splits["test"].tensors
    assert x_train.shape == (55000, 1, 28, 28) and x_train.dtype == torch.uint8
    assert x_val.shape == (5000, 1, 28, 28)
    assert x_test.shape == (10000, 1, 28, 28)
    assert set(y_train.unique().tolist()) == set(range(10)) and y_train.dtype == torch.int64
    if cls is FashionMNISTData:  # exactly 1000 test images per class
        assert torch.bincount(y_test).tolist() == [1000] * 10
    assert data.num_classes == 10 and data.num_inputs == 784 and data.in_channels == 1


def test_val_split_is_fixed_by_seed_and_disjoint_from_train() -> None:
    a, b, c = DigitsData(seed=0), DigitsData(seed=0), DigitsData(seed=1)
    for data in (a, b, c):
        data.setup()
    assert torch.equal(a.splits["val"].tensors[0], b.splits["val"].tensors[0])
    assert not torch.equal(a.splits["val"].tensors[0], c.splits["val"].tensors[0])
    sizes = {split: len(ds) for split, ds in a.splits.items()}
    assert sizes == {"train": 1797 - 600, "val": 300, "test": 300}
    train_rows = {tuple(r.flatten().tolist()) for r in a.splits["train"].tensors[0]}
    test_rows = [tuple(r.flatten().tolist()) for r in a.splits["test"].tensors[0]]
    overlap = sum(r in train_rows for r in test_rows)
    assert overlap < 5  # a handful of digits are pixel-identical duplicates in the dataset


def test_batches_are_fetched_by_index_and_scaled_after_transfer() -> None:
    data = DigitsData(batch_size=16, resize=16)
    data.setup()
    x, y = next(iter(data.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 1, 8, 8) and y.shape == (16,)
    x, y = data.on_after_batch_transfer((x, y), 0)
    assert x.dtype == torch.float32 and x.shape == (16, 1, 16, 16)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert data.input_shape == (1, 16, 16) and data.num_inputs == 256


def test_tensor_batches_fetch_a_whole_batch_at_once() -> None:
    ds = TensorBatches(torch.arange(10), torch.arange(10) * 2)
    xs, ys = ds.__getitems__([3, 1, 4])
    assert xs.tolist() == [3, 1, 4] and ys.tolist() == [6, 2, 8]
    images = torch.arange(10 * 2 * 3, dtype=torch.uint8).view(10, 1, 2, 3)
    index = torch.tensor([9, 0, 9, 5])  # as TensorIndexBatches hands it over, repeats allowed
    (batch,) = TensorBatches(images).__getitems__(index)
    assert batch.dtype == torch.uint8 and torch.equal(batch, images[index])
    with pytest.raises(ValueError):
        TensorBatches(torch.arange(3), torch.arange(4))


def test_synthetic_regression_follows_the_true_parameters() -> None:
    data = SyntheticRegressionData()
    data.setup()
    x, y = data.splits["train"].tensors
    assert x.shape == (1000, 2) and y.shape == (1000, 1)
    residual = y.squeeze(1) - (x @ torch.tensor([2.0, -3.4]) + 4.2)
    assert residual.std().item() == pytest.approx(0.01, rel=0.15)
    assert len(data.splits["val"]) == 1000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_size": 0}, "val_size"),
        ({"resize": -3}, "resize"),
        ({"max_shift": -1}, "max_shift"),
        ({"max_shift": 8}, "max_shift"),
    ],
)
def test_bad_data_arguments_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsData(**kwargs)


def test_shift_and_flip_moves_whole_pixels_per_image() -> None:
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8)
    out = shift_and_flip(images)
    assert out.shape == images.shape
    changed = (out != images).flatten(1).any(1)
    assert changed.float().mean() > 0.5  # most images moved or flipped
    # every output pixel is an input pixel of the same image or the zero fill
    for original, augmented in zip(images, out, strict=True):
        assert set(augmented.unique().tolist()) <= set(original.unique().tolist()) | {0.0}


def test_shift_and_flip_with_no_shift_only_flips() -> None:
    torch.manual_seed(0)
    images = torch.rand(64, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    out = shift_and_flip(images, max_shift=0)
    kept = (out == images).flatten(1).all(1)
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((kept | flipped).all())  # each image whole, mirrored or not
    assert 16 < int(flipped.sum()) < 48  # about half of them mirrored


def test_augmentation_applies_to_training_batches_only() -> None:
    import lightning as L

    data = DigitsData(batch_size=32, augment=True, max_shift=0)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    data.trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data.trainer.training = True
    torch.manual_seed(0)
    train_x, _ = data.on_after_batch_transfer(batch, 0)
    data.trainer.validating = True
    val_x, _ = data.on_after_batch_transfer(batch, 0)
    assert torch.equal(val_x, batch[0].float() / 16)
    assert not torch.equal(train_x, val_x)
    # max_shift=0 reaches the augmentation: every training image is whole, mirrored or not
    whole = (train_x == val_x) | (train_x == val_x.flip(-1))
    assert bool(whole.flatten(1).all(1).all())
