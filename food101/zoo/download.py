"""Download Model Zoo files: resumable, verified, never leaving a bad file in place.

    <base_url>/<model>/<file>  ──HTTP GET (Range: bytes=N- when <file>.part holds N bytes)──►
    <dest>/.<file>.part  ──size + SHA-256 match checksums.json──►  os.replace ──►  <dest>/<file>
                         └─mismatch──► .part deleted, DownloadVerificationError

A download cut off midway keeps its `.part` file and the next call resumes it. A file already
in place that verifies is not downloaded again. Each finished download is recorded in
`<dest>/download.json` (url, size, sha256, time).

Expected checksums come from `models/<model>/checksums.json` (the model card's machine-readable
half); a file listed there with `null` (value_info.json) has no published checksum and is
checked for being the JSON the zoo format expects.
"""
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request

from food101.caffe2.errors import Caffe2Error
from food101.fileio import atomic_write

DEFAULT_BASE_URL = "https://s3.amazonaws.com/download.caffe2.ai/models"
BASE_URL_ENV = "FOOD101_ZOO_BASE_URL"
MODELS_DIR_ENV = "FOOD101_MODELS_DIR"
CHUNK = 1 << 16

# The published SHA-256 of the Caffe2 Model Zoo files (mirrored in models/<name>/checksums.json;
# this copy serves an installed package that has no models/ folder next to it).
KNOWN_CHECKSUMS = {
    "squeezenet": {
        "init_net.pb": {"size": 6181001,
                        "sha256": "d8115221de899d081a1a83785bf0dbaeea19463cdf7dbddba662cc7abb4f32dc"},
        "predict_net.pb": {"size": 6175,
                           "sha256": "d20be00eb448d3952265620357132916aba8744b027937b56c469b001b46472b"},
        "value_info.json": None,
    },
}


class DownloadError(Caffe2Error):
    pass


class DownloadVerificationError(DownloadError):
    """A downloaded file's size or SHA-256 differs from the published one."""


def models_dir():
    """The project's models/ folder (FOOD101_MODELS_DIR overrides)."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "models")


def load_checksums(model_name, path=None):
    """{file: {"size", "sha256"} or None} for a model, from checksums.json or the built-in table."""
    path = path or os.path.join(models_dir(), model_name, "checksums.json")
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)["files"]
    if model_name in KNOWN_CHECKSUMS:
        return KNOWN_CHECKSUMS[model_name]
    raise DownloadError("no checksums for model %r: %s does not exist and the model is not one of "
                        "the known ones (%s)" % (model_name, path, ", ".join(sorted(KNOWN_CHECKSUMS))))


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path, expected):
    """None when `path` matches expected {"size", "sha256"} (or passes the value_info check when
    expected is None); otherwise a sentence saying what differs."""
    if not os.path.exists(path):
        return "%s does not exist" % path
    if expected is None:
        return _check_value_info(path) if path.endswith(".json") else None
    size = os.path.getsize(path)
    if size != expected["size"]:
        return "%s has %d bytes, the published file has %d" % (path, size, expected["size"])
    digest = sha256_of(path)
    if digest != expected["sha256"]:
        return "%s has SHA-256 %s, the published file has %s" % (path, digest, expected["sha256"])
    return None


def _check_value_info(path):
    try:
        with open(path) as fh:
            info = json.load(fh)
        (_, (_, shape)), = info.items()
        [int(d) for d in shape]
    except (OSError, ValueError, TypeError, AttributeError):
        return "%s is not a value_info.json ({\"<input>\": [data_type, [dims]]})" % path
    return None


def download_model(model_name="squeezenet", dest=None, base_url=None, checksums=None,
                   progress=True, timeout=60.0, force=False):
    """Download `<base_url>/<model_name>/<file>` for every file in the model's checksums.

    dest: target folder (default models/<model_name>). base_url: default $FOOD101_ZOO_BASE_URL or
    the Caffe2 zoo's download site. checksums: {file: {"size", "sha256"} | None} or a path to a
    checksums.json. Returns {file: path}. Raises DownloadVerificationError for a file that does not
    match (the bad bytes are deleted), DownloadError for network failures (a partial download is
    kept and resumed next time).
    """
    base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    dest = os.fspath(dest or os.path.join(models_dir(), model_name))
    if checksums is None or isinstance(checksums, (str, os.PathLike)):
        checksums = load_checksums(model_name, checksums)
    os.makedirs(dest, exist_ok=True)
    paths = {}
    for filename, expected in checksums.items():
        target = os.path.join(dest, filename)
        paths[filename] = target
        if not force and os.path.exists(target) and verify_file(target, expected) is None:
            _say(progress, "%s: already present and verified" % target)
            continue
        url = "%s/%s/%s" % (base_url, model_name, filename)
        _fetch_verified(url, target, expected, progress, timeout)
        _record(dest, filename, url, target, expected)
    return paths


def _fetch_verified(url, target, expected, progress, timeout):
    part = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".part")
    if expected is not None and os.path.exists(part) and os.path.getsize(part) > expected["size"]:
        os.unlink(part)  # longer than the real file: cannot be a prefix of it
    _fetch(url, part, expected["size"] if expected else None, progress, timeout)
    problem = verify_file(part, expected)
    if problem is not None:
        os.unlink(part)
        raise DownloadVerificationError(
            "download of %s rejected: %s; the corrupt file was deleted, nothing was written to %s"
            % (url, problem.replace(part, "the downloaded file"), target))
    os.replace(part, target)


def _fetch(url, part, total, progress, timeout):
    """GET url into `part`, resuming from its current size with an HTTP Range request."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if total is not None and have == total:
        return  # complete already; verification decides
    request = urllib.request.Request(url, headers={"User-Agent": "food101-zoo-downloader"})
    if have:
        request.add_header("Range", "bytes=%d-" % have)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the range starts at the end: the part is whole
            return
        raise DownloadError("download of %s failed: HTTP %d %s" % (url, e.code, e.reason)) from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError("download of %s failed: %s (check the network or pass another "
                            "--base-url)" % (url, getattr(e, "reason", e))) from None
    with response:
        if have and response.status != 206:  # server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        size = total if total is not None else (have + int(length) if length else None)
        bar = _progress_bar(progress, size, have, os.path.basename(url))
        try:
            with open(part, "ab" if have else "wb") as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as e:
                        raise DownloadError("download of %s interrupted after %d bytes: %s; run again "
                                            "to resume" % (url, fh.tell(), e)) from None
                    if not block:
                        break
                    fh.write(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    got = os.path.getsize(part)
    if length is not None and got != have + int(length):
        raise DownloadError("download of %s ended early: %d of %d bytes; run again to resume"
                            % (url, got, have + int(length)))


def _progress_bar(progress, total, initial, label):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, leave=True)


def _say(progress, message):
    if progress:
        print(message)


def _record(dest, filename, url, path, expected):
    record_path = os.path.join(dest, "download.json")
    record = {}
    if os.path.exists(record_path):
        try:
            with open(record_path) as fh:
                record = json.load(fh)
        except ValueError:
            record = {}
    record[filename] = {"url": url, "size": os.path.getsize(path), "sha256": sha256_of(path),
                        "verified_against": "published sha256" if expected else "format check only",
                        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_write(record_path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
        fh.write("\n")
