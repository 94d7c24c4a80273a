"""Per-blob statistics of params, gradients and activations, and the table that shows them.

For each float blob: min, max, mean, sdev, L2 norm, fraction of exact zeros, NaN and Inf counts,
and for ReLU outputs the fraction of dead channels (zero for every sample and position of the
batch). All reductions run on the blob's device; the numbers of every blob are stacked and
copied to the host once, so a record costs one synchronisation. Statistics of blobs holding
NaN/Inf are recomputed over their finite values (rare path), so one NaN does not hide the scale.

    {name: tensor} --(device reductions, one stack)--> .cpu() --> {name: BlobStats}
                                                                   |
                                       format_table() <------------+------> record (metrics.jsonl)
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import torch

from food101.diagnostics import netinfo

FIELDS = ("min", "max", "mean", "std", "norm", "zero_frac", "nan", "inf", "dead_frac")
KINDS = ("param", "grad", "activation", "state")


@dataclass
class BlobStats:
    kind: str
    shape: Tuple[int, ...]
    min: float
    max: float
    mean: float
    std: float
    norm: float
    zero_frac: float
    nan: int
    inf: int
    dead_frac: Optional[float] = None     # ReLU outputs only: channels zero over the whole batch
    update_ratio: Optional[float] = None  # params only, when measured: |w_t - w_t-1| / |w_t-1|

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in d.items() if v is not None}


def _json_float(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf; "nan"/"inf" strings survive json.loads
    return v


def _reductions(x, dead_channels):
    """A float64 vector of FIELDS for tensor x (all on x's device)."""
    x = x.detach()
    if x.dtype != torch.float32 and x.dtype != torch.float64:
        x = x.float()
    n = x.numel()
    if n == 0:
        return torch.full((len(FIELDS),), float("nan"), dtype=torch.float64, device=x.device)
    flat = x.reshape(-1)
    nan = torch.isnan(flat).sum()
    finite = torch.isfinite(flat).sum()
    mn, mx = torch.aminmax(flat)
    mean = flat.mean()
    std = flat.std(correction=0) if n > 1 else torch.zeros((), device=x.device)
    norm = torch.linalg.vector_norm(flat)
    zeros = n - torch.count_nonzero(flat)
    if dead_channels and x.dim() >= 2 and x.shape[1] > 0:
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).amax(dim=1)
        dead = (per_channel <= 0).double().mean()
    else:
        dead = torch.tensor(float("nan"), device=x.device)
    values = [mn, mx, mean, std, norm, zeros / n, nan, n - finite - nan, dead]
    return torch.stack([torch.as_tensor(v, device=x.device).double() for v in values])


def _finite_only(x):
    flat = x.detach().reshape(-1).double()
    return flat[torch.isfinite(flat)]


def tensor_stats(x, kind="activation", dead_channels=False):
    """BlobStats of one tensor."""
    return collect_stats({"x": x}, {"x": kind}, {"x"} if dead_channels else ())["x"]


def collect_stats(blobs, kinds, relu_outputs=()):
    """{name: BlobStats} for the float tensors in `blobs` ({name: tensor}); kinds: {name: kind}."""
    names = [n for n, v in blobs.items()
             if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not names:
        return {}
    by_device = {}
    for n in names:
        by_device.setdefault(blobs[n].device, []).append(n)
    rows = {}
    for device, group in by_device.items():
        with torch.no_grad():
            stacked = torch.stack([_reductions(blobs[n], n in relu_outputs) for n in group])
        for n, row in zip(group, stacked.cpu().tolist()):  # one device->host copy per device
            rows[n] = row
    out = {}
    for n in names:
        mn, mx, mean, std, norm, zero_frac, nan, inf, dead = rows[n]
        if nan or inf:
            finite = _finite_only(blobs[n])
            if finite.numel():
                mn, mx = finite.min().item(), finite.max().item()
                mean, std = finite.mean().item(), finite.std(correction=0).item()
                norm = torch.linalg.vector_norm(finite).item()
            else:
                mn = mx = mean = std = norm = float("nan")
        out[n] = BlobStats(kind=kinds.get(n, "activation"), shape=tuple(blobs[n].shape), min=mn,
                           max=mx, mean=mean, std=std, norm=norm, zero_frac=zero_frac,
                           nan=int(nan), inf=int(inf),
                           dead_frac=None if math.isnan(dead) else dead)
    return out


def select_blobs(netdef, params, available, which="all", param_to_grad=None):
    """[(name, kind)] in net order for `which` = params | grads | activations | all (or a
    comma-separated mix); only names present in `available` (a container of blob names).

    Activations are the float outputs of the forward ops that are not params; in-place names
    (`Relu conv1 -> conv1`) appear once, holding the blob's last value. Grads are the params'
    `_grad` blobs, then the activations' ones. Note Caffe2's MomentumSGDUpdate writes the
    momentum step (lr x smoothed gradient) back into `<param>_grad`: read after the update, a
    param's grad row is the step it took; activation grads are the plain gradients."""
    netdef = netinfo.as_netdef(netdef)
    wanted = {w.strip() for w in str(which).split(",") if w.strip()}
    if "all" in wanted:
        wanted = {"params", "grads", "activations"}
    unknown = wanted - {"params", "grads", "activations"}
    if unknown:
        raise ValueError("stats_blobs: unknown selection %s; use params, grads, activations or all"
                         % ", ".join(sorted(unknown)))
    params = [str(p) for p in params]
    param_set = set(params)
    grad_of = {p: str((param_to_grad or {}).get(p, p + "_grad")) for p in params}
    out = []
    if "activations" in wanted:
        seen = set()
        state = netinfo.running_statistics(netdef)
        for op in netdef.op[:netinfo.forward_end(netdef)]:
            for name in op.output:
                if name in seen or name in param_set or name not in available:
                    continue
                seen.add(name)
                out.append((name, "state" if name in state else "activation"))
    if "params" in wanted:
        out.extend((p, "param") for p in params if p in available)
    if "grads" in wanted:
        out.extend((grad_of[p], "grad") for p in params if grad_of[p] in available)
        # gradients of activations, in net order (eager nets write them; compiled ones do not)
        taken = {name for name, _ in out}
        for op in netdef.op[:netinfo.forward_end(netdef)]:
            for name in op.output:
                g = name + "_grad"
                if name not in param_set and g in available and g not in taken:
                    taken.add(g)
                    out.append((g, "grad"))
    return out


def relu_outputs(netdef):
    netdef = netinfo.as_netdef(netdef)
    return {op.output[0] for op in netdef.op[:netinfo.forward_end(netdef)]
            if op.type == "Relu" and op.output}


def trained_relus(netdef, params):
    """ReLU outputs whose input comes from an op with trained params (dead units there can
    be blamed on training; a frozen pretrained layer's silent channels are its design)."""
    netdef = netinfo.as_netdef(netdef)
    params = set(params)
    out = set()
    end = netinfo.forward_end(netdef)
    for index, op in enumerate(netdef.op[:end]):
        if op.type != "Relu" or not op.output:
            continue
        _i, producer = netinfo.producers_before(netdef, op.input[0], index)
        if producer is not None and any(name in params for name in producer.input):
            out.add(op.output[0])
    return out


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if v == 0:
        return "0"
    return "%.3g" % v


def format_table(stats, title=None):
    """A fixed-width text table of {name: BlobStats} (or of the dicts in a metrics record)."""
    header = ("blob", "kind", "shape", "min", "max", "mean", "sdev", "norm", "zero%", "dead%",
              "nan", "inf", "upd/w")
    rows = []
    for name, s in stats.items():
        d = s.to_dict() if isinstance(s, BlobStats) else dict(s)
        shape = "x".join(str(v) for v in d.get("shape", ())) or "scalar"
        dead = d.get("dead_frac")
        rows.append((name, d.get("kind", "?")[:5], shape, _fmt(d.get("min")), _fmt(d.get("max")),
                     _fmt(d.get("mean")), _fmt(d.get("std")), _fmt(d.get("norm")),
                     "%.1f" % (100 * float(d.get("zero_frac", 0))),
                     "-" if dead is None else "%.1f" % (100 * float(dead)),
                     str(d.get("nan", 0)), str(d.get("inf", 0)), _fmt(d.get("update_ratio"))))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    out = [title] if title else []
    out.append(line(header))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def stats_record(iteration, stats):
    """The metrics.jsonl record of one statistics pass."""
    return {"kind": "blob_stats", "iteration": int(iteration),
            "blobs": {name: s.to_dict() for name, s in stats.items()}}
