"""Findings: what a diagnostic check reports, and the log that prints each one once.

A `Finding` is data (a code tests can match, a severity, a plain-language message that says the
cause and the fix, and where in the net it points), so the same finding can go to the log, to
metrics.jsonl and into a test assertion.
"""
import logging
from dataclasses import asdict, dataclass, field
from typing import Optional

log = logging.getLogger("food101.diagnostics")

INFO, WARNING, ERROR = "info", "warning", "error"
_LEVELS = {INFO: logging.INFO, WARNING: logging.WARNING, ERROR: logging.ERROR}


@dataclass(frozen=True)
class Where:
    """A place in a net: op position/type/name and the blob concerned (any may be unknown)."""
    net: Optional[str] = None
    op_index: Optional[int] = None
    op_type: Optional[str] = None
    op_name: Optional[str] = None
    blob: Optional[str] = None

    def __str__(self):
        parts = []
        if self.op_index is not None:
            label = "%s %r" % (self.op_type, self.op_name) if self.op_name else str(self.op_type)
            parts.append("op #%d %s" % (self.op_index, label))
        if self.net:
            parts.append("in net %r" % self.net)
        if self.blob:
            parts.append("blob %r" % self.blob)
        return ", ".join(parts)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    where: Where = field(default_factory=Where)
    iteration: Optional[int] = None

    def __str__(self):
        head = "[%s] %s" % (self.severity.upper(), self.code)
        if self.iteration is not None:
            head += " @ iteration %d" % self.iteration
        where = str(self.where)
        return "%s%s: %s" % (head, " (%s)" % where if where else "", self.message)

    def to_record(self):
        """A JSON-able dict for metrics.jsonl."""
        record = {"phase": "diagnostics", "kind": "finding", "code": self.code, "severity": self.severity,
                  "message": self.message, "iteration": self.iteration}
        record["where"] = {k: v for k, v in asdict(self.where).items() if v is not None}
        return record


def where_op(net_name, index, op, blob=None):
    from food101.diagnostics.netinfo import locate
    net_name, index = locate(net_name, index)  # a member of a combined net, its own index
    return Where(net=net_name, op_index=index, op_type=op.type, op_name=op.name or None, blob=blob)


class FindingLog:
    """Collects findings; logs each (code, place) once so a recurring problem does not flood
    the log, while `all` keeps every occurrence for records and tests."""

    def __init__(self, logger=None):
        self.all = []
        self._seen = set()
        self._pending = []
        self.log = logger or log

    def add(self, finding):
        self.all.append(finding)
        key = (finding.code, finding.where.blob, finding.where.op_index)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._pending.append(finding)
        self.log.log(_LEVELS.get(finding.severity, logging.WARNING), "%s", finding)
        return True

    def extend(self, findings):
        for f in findings:
            self.add(f)

    def codes(self):
        return sorted({f.code for f in self.all})

    def drain(self):
        """Findings first reported since the last call (for the metrics file)."""
        out, self._pending = self._pending, []
        return out
