"""An interrupted build leaves nothing under the final name: kill (SIGKILL), SIGTERM, Ctrl-C,
an exception; a later build clears what a killed one left under its temporary name."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from food101.data import build_lmdb, read_metadata
from food101.data import writer as writer_module
from food101.data.synthetic import make_demo_dataset
from tests.support import REPO

ROOT = REPO

# A build in a child process whose decoding is slowed down, so that it can be killed mid-way.
SLOW_BUILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, %(root)r)
    from food101.data import writer
    from food101.data.cli import build_main
    real = writer.decode_chunk
    def slow(tasks, *args):
        time.sleep(0.1)
        return real(tasks, *args)
    writer.decode_chunk = slow
    class Args:
        root, split, out, size, resize, interpolation = sys.argv[1], "train", sys.argv[2], 16, "crop", "area"
        workers, limit_per_class, classes, seed, no_progress = 0, None, None, 0, True
        overwrite = "--overwrite" in sys.argv
    sys.exit(build_main(Args))
""")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "food"
    make_demo_dataset(str(root), train_per_class=12, test_per_class=1, max_side=48)
    return str(root)


def _start(tmp_path, demo, out, *extra):
    script = tmp_path / "slow_build.py"
    script.write_text(SLOW_BUILD % {"root": ROOT})
    return subprocess.Popen([sys.executable, str(script), demo, out, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(out, proc, timeout=30):
    """Until the temporary database holds data (the build is mid-way)."""
    tmp = "%s.tmp-%d" % (out, proc.pid)
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = os.path.join(tmp, "data.mdb")
        if os.path.exists(data) and os.path.getsize(data) > 0:
            return tmp
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the build did not start writing")


def test_sigkill_leaves_only_a_temporary_that_the_next_build_removes(tmp_path, demo):
    out = str(tmp_path / "train_lmdb")
    proc = _start(tmp_path, demo, out)
    tmp = _wait_for_records(out, proc)
    proc.kill()
    proc.wait()
    assert not os.path.exists(out)
    assert os.path.isdir(tmp)                     # SIGKILL cannot clean up; the name says temporary
    summary = build_lmdb(demo, "train", out, size=16, workers=0, progress=False)
    assert summary.num_records == 72
    assert not os.path.exists(tmp)
    assert sorted(os.listdir(tmp_path)) == ["slow_build.py", "train_lmdb"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_remove_the_temporary(tmp_path, demo, sig, code):
    out = str(tmp_path / "train_lmdb")
    proc = _start(tmp_path, demo, out)
    _wait_for_records(out, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "nothing was written" in stderr
    assert sorted(os.listdir(tmp_path)) == ["slow_build.py"]


def test_killed_overwrite_keeps_the_old_database(tmp_path, demo):
    out = str(tmp_path / "train_lmdb")
    build_lmdb(demo, "train", out, size=8, workers=0, progress=False)
    proc = _start(tmp_path, demo, out, "--overwrite")
    _wait_for_records(out, proc)
    proc.kill()
    proc.wait()
    assert read_metadata(out)["size"] == 8         # untouched until a new one is complete


def test_exception_mid_build_leaves_nothing(tmp_path, demo, monkeypatch):
    calls = []
    real = writer_module.decode_chunk

    def failing(tasks, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(tasks, *args)
    monkeypatch.setattr(writer_module, "decode_chunk", failing)
    with pytest.raises(OSError, match="disk on fire"):
        build_lmdb(demo, "train", str(tmp_path / "out"), size=16, workers=0, progress=False)
    assert os.listdir(tmp_path) == []
