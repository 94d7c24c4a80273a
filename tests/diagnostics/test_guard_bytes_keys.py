"""The divergence guard with the keys the reader really hands over: bytes (#16 item 1).

Reproduced by the issue: with LMDB keys as bytes the guard died with `TypeError: Object of type
bytes is not JSON serializable` under every policy and left a half-written report; past
max_recoveries it returned "stop" without resume_iteration; its quarantine compared bytes keys
with their str() ("b'...'"), so a quarantined record came round again."""
import json
import math
import os

import pytest

from food101.caffe2 import workspace
from food101.data.reader import LMDBReader
from food101.diagnostics import Diagnostics
from tests.diagnostics.test_divergence_guard import BATCH, CLASSES, POISONED_KEY, build_model, \
    one_thread, poisoned_lmdb  # noqa: F401 (one_thread is an autouse fixture)


def raw_batches(reader):
    """(images, labels, keys) with the reader's own bytes keys, in key order."""
    position = 0
    while True:
        indices = [(position + i) % reader.num_records for i in range(BATCH)]
        position += BATCH
        images, labels = reader.load_batch(indices)
        yield images, labels, [reader.keys[i] for i in indices]


def run(tmp_path, policy, iterations=14, **settings):
    reader = LMDBReader(poisoned_lmdb(tmp_path, "nan"), batch_size=BATCH)
    model = build_model()
    stream = raw_batches(reader)
    images, labels, _ = next(raw_batches(reader))
    workspace.FeedBlob("data", images)
    workspace.FeedBlob("label", labels)
    workspace.CreateNet(model.net)
    config = {"divergence_policy": policy, "spike_factor": 3.0, "spike_warmup": 2,
              "good_state_interval": 2, "stats_interval": 0, "health_interval": 0}
    config.update(settings)
    diag = Diagnostics(config, output_dir=str(tmp_path / "run"), num_classes=CLASSES,
                       max_iter=iterations)
    diag.on_start(model.net, model.param_init_net, model.params, workspace)
    log, it, fed = [], 0, 0
    while it < iterations and fed < 40:
        images, labels, keys = next(stream)
        fed += 1
        assert all(isinstance(k, bytes) for k in keys)
        if diag.on_batch(it + 1, images, labels, keys) == "skip":
            log.append((it + 1, "skipped batch", keys))
            continue
        workspace.FeedBlob("data", images)
        workspace.FeedBlob("label", labels)
        workspace.RunNet(model.net)
        action = diag.after_iteration(it + 1, float(workspace.FetchBlob("loss")), workspace)
        log.append((it + 1, action, keys))
        if action == "stop":
            assert diag.resume_iteration is not None
            break
        it = diag.resume_iteration if action in ("skip", "rollback") else it + 1
    reader.close()
    return diag, log


@pytest.mark.parametrize("policy", ["stop", "skip", "rollback", "report"])
def test_every_policy_completes_with_bytes_keys(tmp_path, policy):
    diag, log = run(tmp_path, policy)
    report = diag.reports[0]
    assert report.iteration == 3 and report.suspect_keys == [POISONED_KEY]
    assert POISONED_KEY in report.keys and all(isinstance(k, str) for k in report.keys)
    assert "b'" not in str(report) and POISONED_KEY in str(report)
    with open(report.report_path) as f:
        saved = json.load(f)        # a whole, valid JSON file
    assert saved["suspects"][0]["key"] == POISONED_KEY and POISONED_KEY in saved["keys"]
    folder = os.path.dirname(report.report_path)
    assert not [n for n in os.listdir(folder) if ".tmp" in n]
    records = diag.pending_records()
    json.dumps(records)              # what goes to metrics.jsonl serialises too
    expected = {"stop": "stop", "skip": "skip", "rollback": "rollback", "report": "continue"}
    assert report.action == expected[policy]
    if policy == "stop":
        assert report.resume_iteration == 2 and log[-1][1] == "stop"


def test_a_quarantined_bytes_key_is_skipped_when_it_comes_round(tmp_path):
    diag, log = run(tmp_path, "rollback")
    assert diag.quarantined_keys == {POISONED_KEY}
    poisoned = POISONED_KEY.encode("ascii")
    skipped = [keys for _, action, keys in log if action == "skipped batch"]
    assert skipped and all(poisoned in keys for keys in skipped)
    ran_again = [a for _, a, keys in log[log.index(next(e for e in log if e[1] == "rollback")) + 1:]
                 if poisoned in keys and a != "skipped batch"]
    assert ran_again == []
    assert len(diag.reports) == 1


def test_past_max_recoveries_the_guard_stops_with_a_resume_iteration(tmp_path):
    diag, log = run(tmp_path, "rollback", max_recoveries=0)
    report = diag.reports[0]
    assert report.action == "stop" and report.resume_iteration == 2
    assert diag.resume_iteration == 2 and "max_recoveries" in report.stopped_by
    assert log[-1][1] == "stop"
    for param in ("pred_w", "pred_b"):    # the state the bad iteration started from: finite
        assert math.isfinite(float(abs(workspace.FetchBlob(param)).sum()))


def test_non_ascii_keys_become_escaped_text(tmp_path):
    from food101.diagnostics.guard import DivergenceReport
    report = DivergenceReport(iteration=5, reason="nonfinite_loss", loss=float("nan"),
                              running_average=None, spike_factor=5.0, policy="stop",
                              keys=[b"\xff\x00k", "caf\u00e9".encode()],
                              suspects=[{"index": 0, "key": b"\xff\x00k", "reasons": ["NaN"]}])
    path = report.save(str(tmp_path / "r" / "divergence_it5.json"))
    saved = json.load(open(path))
    assert saved["keys"] == ["\\xff\\x00k", "caf\u00e9"] and saved["suspects"][0]["key"] == "\\xff\\x00k"
    assert "\\xff\\x00k" in str(report)
