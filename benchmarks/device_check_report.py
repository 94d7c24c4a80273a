"""Collect what benchmarks/device_check.sh measured into one JSON and one markdown table.

    python benchmarks/device_check_report.py OUT_DIR

Reads OUT_DIR/steps.tsv (step, exit status, seconds: written by device_check.sh), the pytest
log, OUT_DIR/throughput.json (train_throughput.py --json) and the training run's
metrics.jsonl; writes OUT_DIR/device_check.json and OUT_DIR/device_check.md.
"""
import datetime
import json
import os
import re
import sys

# targets on an H100/H200-class GPU (issue #17)
TARGETS = {
    "full_compiled_images_per_second": (">=", 15000.0),
    "full_compiled_over_module": (">=", 1.0),
    "frozen_compiled_over_module": (">=", 1.0),
    "end_to_end_over_model_only": (">=", 0.9),
}


def read_steps(out):
    steps = {}
    with open(os.path.join(out, "steps.tsv")) as fh:
        for line in fh:
            name, status, seconds = line.rstrip("\n").split("\t")
            steps[name] = {"exit_status": int(status), "seconds": float(seconds)}
    return steps


def pytest_summary(path):
    """The closing 'N passed, N skipped ...' line of a pytest log, or None."""
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as fh:
        lines = [l.strip() for l in fh if re.search(r"\d+ (passed|failed|skipped|error)", l)]
    return lines[-1].strip("= ") if lines else None


def training_figures(metrics_path):
    if not os.path.exists(metrics_path):
        return {}
    train, test = [], []
    with open(metrics_path) as fh:
        for line in fh:
            record = json.loads(line)
            (train if record.get("phase") == "train" else test).append(record)
    figures = {}
    if train:
        last = train[-1]
        figures["train_iterations"] = last.get("iteration")
        figures["train_last_loss"] = last.get("loss")
        rates = [r["images_per_s"] for r in train if r.get("images_per_s")]
        if rates:
            figures["train_images_per_second"] = rates[-1]
    if test:
        figures["test_top1"] = test[-1].get("top1")
    return figures


def main(out):
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "steps": read_steps(out)}
    for name in ("device", "torch"):
        path = os.path.join(out, name + ".txt")
        if os.path.exists(path):
            with open(path) as fh:
                report[name] = fh.read().strip()
    report["cuda_tests"] = pytest_summary(os.path.join(out, "logs", "cuda_tests.log"))
    throughput_path = os.path.join(out, "throughput.json")
    if os.path.exists(throughput_path):
        with open(throughput_path) as fh:
            report["throughput"] = json.load(fh)
    report["training"] = training_figures(os.path.join(out, "train_run", "metrics.jsonl"))
    checks = {}
    for key, (op, target) in TARGETS.items():
        value = report.get("throughput", {}).get(key)
        if value is not None:
            checks[key] = {"value": value, "target": "%s %g" % (op, target), "met": value >= target}
    report["targets"] = checks
    with open(os.path.join(out, "device_check.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    lines = ["# Device check, %s" % report["date"], "",
             "Device: %s" % report.get("device", "?"), "", "| step | exit | seconds |", "|---|---|---|"]
    lines += ["| %s | %d | %.0f |" % (k, v["exit_status"], v["seconds"]) for k, v in report["steps"].items()]
    lines += ["", "cuda-marked tests: %s" % (report["cuda_tests"] or "no summary line"), "",
              "| figure | value |", "|---|---|"]
    for key, value in sorted(report.get("throughput", {}).items()):
        lines.append("| %s | %s |" % (key, "%.2f" % value if isinstance(value, float) else value))
    for key, value in sorted(report["training"].items()):
        lines.append("| train.py: %s | %s |" % (key, "%.3f" % value if isinstance(value, float) else value))
    if checks:
        lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
        lines += ["| %s | %.2f | %s | %s |" % (k, c["value"], c["target"], "yes" if c["met"] else "NO")
                  for k, c in checks.items()]
    with open(os.path.join(out, "device_check.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
