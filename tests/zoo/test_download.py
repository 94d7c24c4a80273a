"""The Model Zoo downloader against a local HTTP server on 127.0.0.1 (never any other address).

The server serves generated files with HTTP Range support; one route serves corrupted bytes
and one drops the connection halfway, to check rejection and resuming.
"""
import hashlib
import http.server
import importlib.util
import json
import os
import threading

import numpy as np
import pytest

from food101 import zoo
from food101.zoo.download import DownloadError, DownloadVerificationError, download_model
from tests.support import REPO

REPO = REPO


def _files():
    rs = np.random.RandomState(0)
    return {
        "init_net.pb": rs.bytes(300_000),
        "predict_net.pb": rs.bytes(6175),
        "value_info.json": json.dumps({"data": [1, [1, 3, 227, 227]]}).encode(),
    }


def _checksums(files):
    return {name: None if name.endswith(".json") else
            {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in files.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    # set per server: {url path: bytes}, modes {url path: "corrupt" | "cut"}, request log
    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        data = srv.content.get(self.path)
        if data is None:
            self.send_error(404)
            return
        mode = srv.modes.get(self.path)
        if mode == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and mode != "norange":
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":
            srv.modes.pop(self.path)  # the next request is served whole
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.timeout = 5
    httpd.content, httpd.modes, httpd.log = {}, {}, []
    files = _files()
    for name, data in files.items():
        httpd.content["/models/squeezenet/" + name] = data
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.files = files
    httpd.base_url = "http://127.0.0.1:%d/models" % httpd.server_address[1]
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _download(server, dest, **kw):
    return download_model("squeezenet", dest=dest, base_url=server.base_url,
                          checksums=_checksums(server.files), progress=False, timeout=5, **kw)


def test_good_files_are_downloaded_verified_and_recorded(server, tmp_path):
    dest = tmp_path / "squeezenet"
    paths = _download(server, dest)
    for name, data in server.files.items():
        assert open(paths[name], "rb").read() == data
    assert sorted(os.listdir(dest)) == ["download.json", "init_net.pb", "predict_net.pb", "value_info.json"]
    record = json.loads((dest / "download.json").read_text())
    assert record["init_net.pb"]["sha256"] == hashlib.sha256(server.files["init_net.pb"]).hexdigest()
    assert record["init_net.pb"]["url"].startswith("http://127.0.0.1:")
    # a second call finds everything verified and downloads nothing
    before = len(server.log)
    _download(server, dest)
    assert len(server.log) == before


def test_corrupted_file_is_rejected_and_not_left_in_place(server, tmp_path):
    dest = tmp_path / "squeezenet"
    server.modes["/models/squeezenet/init_net.pb"] = "corrupt"
    with pytest.raises(DownloadVerificationError, match="SHA-256") as err:
        _download(server, dest)
    assert "init_net.pb" in str(err.value) and "deleted" in str(err.value)
    assert not (dest / "init_net.pb").exists()
    assert not any(name.endswith(".part") for name in os.listdir(dest))


def test_wrong_size_is_rejected(server, tmp_path):
    dest = tmp_path / "squeezenet"
    server.content["/models/squeezenet/predict_net.pb"] += b"extra"
    with pytest.raises(DownloadVerificationError, match="bytes"):
        _download(server, dest)
    assert not (dest / "predict_net.pb").exists()
    assert not any(name.endswith(".part") for name in os.listdir(dest))


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "squeezenet"
    path = "/models/squeezenet/init_net.pb"
    server.modes[path] = "cut"
    with pytest.raises(DownloadError, match="resume"):
        _download(server, dest)
    part = dest / ".init_net.pb.part"
    assert part.exists() and 0 < part.stat().st_size < len(server.files["init_net.pb"])
    assert not (dest / "init_net.pb").exists()
    have = part.stat().st_size
    _download(server, dest)
    assert (dest / "init_net.pb").read_bytes() == server.files["init_net.pb"]
    assert (path, "bytes=%d-" % have) in server.log
    assert not part.exists()


def test_a_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "squeezenet"
    dest.mkdir()
    (dest / ".init_net.pb.part").write_bytes(server.files["init_net.pb"][:1000])
    server.modes["/models/squeezenet/init_net.pb"] = "norange"
    _download(server, dest)
    assert (dest / "init_net.pb").read_bytes() == server.files["init_net.pb"]


def test_a_bad_local_file_is_replaced(server, tmp_path):
    dest = tmp_path / "squeezenet"
    dest.mkdir()
    (dest / "predict_net.pb").write_bytes(b"stale")
    _download(server, dest)
    assert (dest / "predict_net.pb").read_bytes() == server.files["predict_net.pb"]


def test_http_errors_are_clear(server, tmp_path):
    del server.content["/models/squeezenet/predict_net.pb"]
    with pytest.raises(DownloadError, match="HTTP 404"):
        _download(server, tmp_path / "squeezenet")


def _tool():
    spec = importlib.util.spec_from_file_location("download_model_tool",
                                                  os.path.join(REPO, "tools", "download_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_tool(server, tmp_path, capsys):
    checksums = tmp_path / "checksums.json"
    checksums.write_text(json.dumps({"files": _checksums(server.files)}))
    dest = tmp_path / "cli"
    argv = ["squeezenet", "--dest", str(dest), "--base-url", server.base_url, "--checksums",
            str(checksums), "--no-progress"]
    tool = _tool()
    assert tool.main(argv) == 0
    assert (dest / "init_net.pb").read_bytes() == server.files["init_net.pb"]
    assert "init_net.pb" in capsys.readouterr().out
    server.modes["/models/squeezenet/predict_net.pb"] = "corrupt"
    (dest / "predict_net.pb").unlink()
    assert tool.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "rejected" in err and "predict_net.pb" in err
    assert not (dest / "predict_net.pb").exists()


def test_verify_file_reports_what_differs(tmp_path):
    path = tmp_path / "f.pb"
    path.write_bytes(b"abc")
    good = {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert zoo.verify_file(str(path), good) is None
    assert "4" in zoo.verify_file(str(path), dict(good, size=4))
    assert "SHA-256" in zoo.verify_file(str(path), dict(good, sha256="0" * 64))
