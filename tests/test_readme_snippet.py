"""The README's API snippet runs as written, as a plain script without a __main__ guard, twice
(#16 item 8: the LMDB builder's workers re-imported the script; the second run raised
FileExistsError)."""
import os
import re
import subprocess
import sys

from food101.data.synthetic import DEMO_CLASSES
from tests.support import REPO


def readme_snippet():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## The Python API in ten lines"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_twice_as_a_plain_script(tmp_path):
    script = tmp_path / "x.py"
    script.write_text(readme_snippet())
    assert "__main__" not in script.read_text()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for attempt in (1, 2):
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, "run %d:\n%s" % (attempt, result.stderr[-3000:])
        assert "Traceback" not in result.stderr
        assert any(name in result.stdout for name in DEMO_CLASSES)      # the predictions
    assert (tmp_path / "food.onnx").exists()
    assert (tmp_path / "runs" / "api_demo" / "deploy" / "predict_net.pb").exists()
