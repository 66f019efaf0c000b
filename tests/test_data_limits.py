"""Bounded decoding (issue 9, item 8): oversized images are refused before decoding; zip
members and gzip streams are inflated only up to a cap, with one-line DataErrors."""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from pni import data
from pni.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, DataError, load_dataset, read_idx

MB = 1 << 20


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNI_DATA", str(tmp_path / "pni-home"))
    monkeypatch.delenv(data.ENV_MAX_IMAGE_PIXELS, raising=False)
    monkeypatch.delenv(data.ENV_MAX_INFLATED_BYTES, raising=False)
    monkeypatch.delenv(data.ENV_MAX_DATASET_BYTES, raising=False)


# --- helpers ----------------------------------------------------------------------------

def gray_png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit grayscale PNG, built row by row (no image in memory)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    deflate = zlib.compressobj(9)
    rows = b"\x00" * (width + 1) * 64
    parts = [deflate.compress(rows) for _ in range(height // 64)]
    parts += [deflate.compress(b"\x00" * (width + 1) * (height % 64)), deflate.flush()]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def small_png(size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def zip_of_zeros(path: Path, name: str, size: int) -> Path:
    """A zip whose one member inflates to ``size`` zero bytes (written in 1 MiB blocks)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as member:
            for _ in range(size // MB):
                member.write(bytes(MB))
    return path


def idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


def gzip_bomb(path: Path, header: bytes, zeros: int) -> Path:
    """``header`` followed by ``zeros`` zero bytes, gzipped in blocks."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(header)] + [deflate.compress(bytes(MB)) for _ in range(zeros // MB)]
    path.write_bytes(b"".join(parts) + deflate.flush())
    return path


# --- images -----------------------------------------------------------------------------

def test_oversized_image_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = zip_with(tmp_path / "big.zip", {"train/a/0.png": gray_png(5000, 4000)})

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded an image above the pixel limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    message = str(info.value)
    assert message.startswith("image ") and "\n" not in message and "big.zip/train/a/0.png" in message
    assert "5000x4000" in message and f"limit of {4096 * 4096} pixels" in message


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "f"
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "a" / "0.png").write_bytes(small_png(4))
    monkeypatch.setenv(data.ENV_MAX_IMAGE_PIXELS, "15")
    with pytest.raises(DataError, match=r"4x4 = 16 pixels, above the limit of 15 pixels.*PNI_MAX_IMAGE_PIXELS"):
        load_dataset("imagefolder", "train", data_dir=root)
    monkeypatch.setenv(data.ENV_MAX_IMAGE_PIXELS, "16")
    assert len(load_dataset("imagefolder", "train", data_dir=root)) == 1
    monkeypatch.setenv(data.ENV_MAX_IMAGE_PIXELS, "many")
    with pytest.raises(DataError, match="PNI_MAX_IMAGE_PIXELS='many': expected a positive integer"):
        data.max_image_pixels()
    monkeypatch.delenv(data.ENV_MAX_IMAGE_PIXELS)
    monkeypatch.setattr(data.limits, "MAX_IMAGE_PIXELS", 10)
    assert data.max_image_pixels() == 10


def test_zip_member_above_the_cap_is_not_inflated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.ENV_MAX_IMAGE_PIXELS, "64")  # cap: 8 * 64 bytes + 1 MiB
    archive = zip_of_zeros(tmp_path / "bomb.zip", "train/a/0.png", 3 * MB)
    opened: list[str] = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
        opened.append(str(getattr(name, "filename", name))), original(self, name, *a, **k))[1])
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    assert f"inflates to {3 * MB} bytes, above the limit of {8 * 64 + MB} bytes" in str(info.value)
    assert "bomb.zip/train/a/0.png" in str(info.value) and "\n" not in str(info.value)
    assert "train/a/0.png" not in opened


def test_zip_member_that_understates_its_size_stops_there(tmp_path: Path) -> None:
    archive = zip_of_zeros(tmp_path / "liar.zip", "train/a/0.png", 2 * MB)
    raw = bytearray(archive.read_bytes())
    struct.pack_into("<I", raw, 22, 100)                      # local header: uncompressed size
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 100)            # central directory: the same
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"cannot read image .*liar\.zip/train/a/0\.png.*CRC"):
        load_dataset("imagefolder", "train", data_dir=archive)


def test_image_file_above_the_cap_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.ENV_MAX_IMAGE_PIXELS, "64")
    image = tmp_path / "f" / "train" / "a" / "0.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(small_png() + bytes(2 * MB))
    with pytest.raises(DataError, match=rf"is {image.stat().st_size} bytes, above the limit of {8 * 64 + MB}"):
        load_dataset("imagefolder", "train", data_dir=tmp_path / "f")


# --- gzip streams and archives ------------------------------------------------------------

def test_gzip_stream_is_inflated_only_to_its_announced_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = gzip_bomb(tmp_path / "labels.gz", idx_header(IDX_LABELS_MAGIC, 7) + bytes(7), 64 * MB)
    asked: list[int] = []
    from pni.data.idx import _GzipStream

    original = _GzipStream.read
    monkeypatch.setattr(_GzipStream, "read", lambda self, size: (asked.append(size), original(self, size))[1])
    with pytest.raises(DataError, match=r"labels\.gz: unexpected extra bytes.*more than the 15 bytes"):
        read_idx(path, IDX_LABELS_MAGIC)
    assert sum(asked) <= 4 + 4 + 15 + 1  # the header, then all 15 bytes again, then one more


def test_gzip_header_announcing_too_much_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_header(IDX_IMAGES_MAGIC, 10, 28, 28) + bytes(7840)))
    assert read_idx(path, IDX_IMAGES_MAGIC).shape == (10, 28, 28)
    monkeypatch.setenv(data.ENV_MAX_INFLATED_BYTES, "1000")
    with pytest.raises(DataError, match=r"images\.gz: IDX header announces 10 x 28 x 28 uint8 \(7856 bytes\), "
                                        r"above the limit of 1000 bytes \(raise it with PNI_MAX_INFLATED_BYTES\)"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_multi_member_and_zero_padded_gzip_still_load(tmp_path: Path) -> None:
    payload = idx_header(IDX_LABELS_MAGIC, 5) + bytes([1, 2, 3, 4, 5])
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(payload[:6]) + gzip.compress(payload[6:]) + bytes(16))
    assert read_idx(path, IDX_LABELS_MAGIC).tolist() == [1, 2, 3, 4, 5]
    path.write_bytes(gzip.compress(payload)[:-6])
    with pytest.raises(DataError, match=r"labels\.gz: corrupt gzip file"):
        read_idx(path, IDX_LABELS_MAGIC)


def test_cifar_member_above_its_expected_size_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({b"data": bytes(500)}))
    monkeypatch.setattr(data.cifar10, "CIFAR_MEMBER_BYTES", 100)
    with pytest.raises(DataError, match=r"test_batch: \d+ bytes, above the limit of 100 bytes"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


# --- memory: a subprocess's peak RSS ----------------------------------------------------

_MEASURE = """
import json, resource, sys
from pni.data import IDX_IMAGES_MAGIC, DataError, load_dataset, read_idx

def reset_peak():  # Linux: writing 5 to clear_refs resets VmHWM, the peak RSS
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

def peak_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def current_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

load_dataset("imagefolder", "train", data_dir=sys.argv[1])  # warm-up: PIL, zipfile, numpy
cases = {"pixels": lambda: load_dataset("imagefolder", "train", data_dir=sys.argv[2]),
         "zip": lambda: load_dataset("imagefolder", "train", data_dir=sys.argv[3]),
         "gzip": lambda: read_idx(sys.argv[4], IDX_IMAGES_MAGIC)}
out = {}
for name, call in cases.items():
    reset_peak()
    before = current_mb()
    try:
        call()
        error = None
    except DataError as err:
        error = str(err)
    out[name] = {"error": error, "growth_mb": peak_mb() - before}
print(json.dumps(out))
"""


def test_hostile_inputs_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    warm = zip_with(tmp_path / "warm.zip", {"train/a/0.png": small_png()})
    big = gray_png(10000, 10000)  # about 100 KB; 100 MB once decoded
    pixels = zip_with(tmp_path / "pixels.zip", {f"train/a/{i}.png": big for i in range(3)})
    bomb = zip_of_zeros(tmp_path / "zip-bomb.zip", "train/a/0.png", 256 * MB)
    gz = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", idx_header(IDX_IMAGES_MAGIC, 10000, 28, 28),
                   256 * MB)  # announces 7.8 MB, inflates to 264 MB
    env = {**os.environ, "PNI_DATA": str(tmp_path / "pni-home")}
    env.pop(data.ENV_MAX_IMAGE_PIXELS, None)
    env.pop(data.ENV_MAX_INFLATED_BYTES, None)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(warm), str(pixels), str(bomb), str(gz)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "10000x10000" in out["pixels"]["error"]
    assert f"inflates to {256 * MB} bytes" in out["zip"]["error"]
    assert "unexpected extra bytes" in out["gzip"]["error"]
    for name, result in out.items():
        assert result["growth_mb"] < 100, (name, result)


# --- issue 22: a bound on the whole split, streaming statistics, unreadable zip members -------

_SPLIT_MEMORY = """
import json, sys
from pni.data import DataError, load_dataset

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS:")
try:
    data = load_dataset("imagefolder", "train", data_dir=sys.argv[1])
    result = {"shape": list(data.images.shape), "mean": data.mean}
except DataError as err:
    result = {"error": str(err)}
result["growth_mb"] = status("VmHWM:") - before
print(json.dumps(result))
"""


def _load_in_subprocess(archive: Path, tmp_path: Path, **env_extra: str) -> dict:
    env = {**os.environ, "PNI_DATA": str(tmp_path / "pni-home"), **env_extra}
    done = subprocess.run([sys.executable, "-c", _SPLIT_MEMORY, str(archive)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak RSS on Linux")
def test_a_tiny_zip_of_huge_images_is_bounded_by_the_split_limit(tmp_path: Path) -> None:
    """Three 4096x4096 PNGs in a zip of a few KB: under the default limit they load with memory
    near the pixels themselves (statistics are streamed; 2.7 GB before); under a lower
    $PNI_MAX_DATASET_BYTES they are refused before any is decoded into the split."""
    big = gray_png(4096, 4096)
    archive = zip_with(tmp_path / "huge.zip", {f"train/a/{i}.png": big for i in range(3)})
    assert archive.stat().st_size < 200_000
    loaded = _load_in_subprocess(archive, tmp_path)
    assert loaded["shape"] == [3, 1, 4096, 4096] and loaded["mean"] == [0.0]
    assert loaded["growth_mb"] < 450, loaded   # 3 x 48 MiB buffer + 48 MiB result + decoding
    limit = 100 * MB
    refused = _load_in_subprocess(archive, tmp_path / "other", PNI_MAX_DATASET_BYTES=str(limit))
    assert refused["error"] == (f"{archive} train: 3 images of 4096x4096 decode to {3 * 3 * 4096 * 4096} bytes, "
                                f"above the limit of {limit} bytes for one split (refused before decoding "
                                f"them; raise it with PNI_MAX_DATASET_BYTES)")
    assert refused["growth_mb"] < 60, refused


def test_the_split_limit_rejects_a_bad_environment_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = zip_with(tmp_path / "a.zip", {"train/a/0.png": small_png()})
    monkeypatch.setenv("PNI_MAX_DATASET_BYTES", "lots")
    with pytest.raises(DataError, match=r"^PNI_MAX_DATASET_BYTES='lots': expected a positive integer$"):
        load_dataset("imagefolder", "train", data_dir=archive)


def test_channel_stats_are_exact_and_streamed() -> None:
    import torch

    images = torch.randint(0, 256, (7, 3, 9, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = images.double().div(255).transpose(0, 1).reshape(3, -1)
    for chunk in (1 << 22, 13):
        mean, std = data.channel_stats(images, chunk=chunk)
        assert mean == pytest.approx(reference.mean(1).tolist(), abs=1e-12)
        assert std == pytest.approx(reference.std(1, unbiased=False).tolist(), abs=1e-12)


def _patch_zip(path: Path, *, flag: int = 0, method: int | None = None) -> Path:
    """Sets general-purpose flag bits and/or the compression method in every local and central header."""
    raw = bytearray(path.read_bytes())
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (start := raw.find(signature, start)) != -1:
            bits = struct.unpack_from("<H", raw, start + flag_at)[0] | flag
            struct.pack_into("<H", raw, start + flag_at, bits)
            if method is not None:
                struct.pack_into("<H", raw, start + method_at, method)
            start += 4
    path.write_bytes(bytes(raw))
    return path


def test_an_encrypted_zip_member_is_named(tmp_path: Path) -> None:
    archive = _patch_zip(zip_with(tmp_path / "secret.zip", {"train/a/0.png": small_png()}), flag=0x1)
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    assert str(info.value) == (f"cannot read image {archive.resolve()}/train/a/0.png: the zip member is encrypted "
                               f"(pni reads unencrypted zips only; extract it, or zip it again without a password)")


def test_an_unsupported_compression_method_is_named(tmp_path: Path) -> None:
    archive = _patch_zip(zip_with(tmp_path / "odd.zip", {"train/a/0.png": small_png()}), method=97)
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    message = str(info.value)
    assert message.startswith(f"cannot read image {archive.resolve()}/train/a/0.png: zip member compressed with "
                              f"method 97, which cannot be read here (")
    assert message.endswith("); zip it again with deflate or no compression") and "\n" not in message


def test_running_out_of_memory_while_loading_names_the_archive(tmp_path: Path, monkeypatch) -> None:
    from pni.data import imagefolder

    archive = zip_with(tmp_path / "a.zip", {"train/a/0.png": small_png()})

    def no_memory(images, chunk=0):  # noqa: ANN001, ANN202
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(imagefolder, "channel_stats", no_memory)
    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", "train", data_dir=archive)
    assert str(info.value) == (f"imagefolder {archive.resolve()} train: out of memory while decoding it; lower "
                               f"PNI_MAX_DATASET_BYTES (now {4 << 30} bytes) to refuse such data up front, or "
                               f"free memory")
