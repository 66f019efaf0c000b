"""``--download`` for MNIST and Fashion-MNIST (issue 24, item 3): fetched from a local HTTP
server standing in for the mirrors, every file verified against the md5 of its uncompressed
IDX content; a corrupt download keeps nothing. With ``../shared/data`` at hand the real files
are served and checked against the real checksum table."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from pni.data import DataError, encode_idx, load_dataset
from pni.data import idx_download

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def server(tmp_path: Path):
    """(folder served, list of requested paths, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, hits, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _fake_files(folder: Path, n: int = 20) -> dict[str, str]:
    """Writes four small IDX .gz files; returns {stem: md5 of the uncompressed content}."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n // 2, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n // 2) % 10).astype(np.uint8)}
    md5 = {}
    for stem, array in arrays.items():
        raw = encode_idx(array)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        md5[stem] = hashlib.md5(raw).hexdigest()
    return md5


def test_download_fetches_verifies_and_reuses(server, tmp_path: Path, monkeypatch) -> None:
    served, hits, url = server
    md5 = _fake_files(served)
    monkeypatch.setitem(idx_download.IDX_MD5, "mnist", md5)
    monkeypatch.setitem(idx_download.IDX_MIRRORS, "mnist", ("http://127.0.0.1:9/unreachable/", url))
    data = tmp_path / "data"
    test = load_dataset("mnist", "test", data_dir=data, download=True)
    assert len(test) == 10 and sorted(p.name for p in (data / "mnist").iterdir()) == sorted(f"{s}.gz" for s in md5)
    assert len(hits) == 4
    assert len(load_dataset("mnist", "train", data_dir=data, download=True)) == 20
    assert len(hits) == 4                                       # present and verified: not fetched again
    # a stored file that no longer verifies is fetched again
    (data / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"junk"))
    idx_download.download_idx("mnist", data, progress=False)
    assert hits[-1] == "/t10k-labels-idx1-ubyte.gz" and len(hits) == 5


def test_a_corrupt_download_is_refused_and_nothing_is_kept(server, tmp_path: Path, monkeypatch) -> None:
    served, _, url = server
    md5 = _fake_files(served)
    md5["t10k-images-idx3-ubyte"] = "0" * 32                  # what the server sends is not that file
    monkeypatch.setitem(idx_download.IDX_MD5, "fashion-mnist", md5)
    monkeypatch.setitem(idx_download.IDX_MIRRORS, "fashion-mnist", (url,))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*md5 [0-9a-f]{32}, expected 0{32}"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", download=True)
    left = sorted(p.name for p in (tmp_path / "d" / "fashion-mnist").iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in left and not [n for n in left if n.endswith(".part")]
    monkeypatch.setitem(idx_download.IDX_MIRRORS, "fashion-mnist", ("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match="could not download"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "e", download=True)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_real_files_verify_against_the_real_checksums(name: str, server, tmp_path: Path, monkeypatch) -> None:
    if not (SHARED / name).is_dir():
        pytest.skip(f"no {SHARED / name}")
    served, _, url = server
    for path in (SHARED / name).glob("*-ubyte.gz"):
        shutil.copy(path, served / path.name)
    monkeypatch.setitem(idx_download.IDX_MIRRORS, name, (url,))
    folder = idx_download.download_idx(name, tmp_path, progress=False)
    assert len(list(folder.glob("*.gz"))) == 4
    assert len(load_dataset(name, "test", data_dir=tmp_path)) == 10_000
