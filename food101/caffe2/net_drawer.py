"""caffe2.python.net_drawer: a net as a pydot graph (ops as green boxes, blobs as octagons).

    graph = net_drawer.GetPydotGraph(model.net, rankdir="LR")
    graph.write_png("net.png")            # or display(Image(graph.create_png())) in a notebook
    minimal = net_drawer.GetPydotGraphMinimal(model.net, minimal_dependency=True)

Building the graph needs only `pydot`; rendering it (create_png, write_png, ...) needs Graphviz's
`dot` program. Without it the render raises an error that says how to install it, instead of
pydot's bare FileNotFoundError. A blob written several times gets one node per version (its
name + version number as the node id), so in-place ops draw as a chain, as in Caffe2.
"""
import json
import shutil
from collections import defaultdict

import pydot

from food101.caffe2.errors import Caffe2Error
from food101.caffe2.proto import caffe2_pb2

OP_STYLE = {"shape": "box", "color": "#0F9D58", "style": "filled", "fontcolor": "#FFFFFF"}
BLOB_STYLE = {"shape": "octagon"}


class GraphvizMissingError(Caffe2Error, FileNotFoundError):
    pass


class Graph(pydot.Dot):
    """pydot.Dot that says clearly when Graphviz is missing."""

    def create(self, prog=None, format="ps", encoding=None):
        program = prog if isinstance(prog, str) else (prog[0] if prog else self.prog)
        if shutil.which(program) is None:
            raise GraphvizMissingError(
                "net_drawer: rendering the graph needs Graphviz's %r program, which is not on "
                "PATH. Install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
                "install graphviz; conda: conda install graphviz), or keep the graph as text "
                "with graph.to_string() / graph.write_raw('net.dot')" % program)
        return super().create(prog=prog, format=format, encoding=encoding)


def _rectify_operator_and_name(operators_or_net, name):
    """(ops, graph name) from a NetDef, anything with Proto() (Net, ModelHelper) or op list."""
    if isinstance(operators_or_net, caffe2_pb2.NetDef):
        netdef = operators_or_net
    elif hasattr(operators_or_net, "Proto"):
        netdef = operators_or_net.Proto()
        if not isinstance(netdef, caffe2_pb2.NetDef):
            raise TypeError("net_drawer: expected a NetDef from Proto(), got %s" % type(netdef).__name__)
    else:
        return list(operators_or_net), name if name is not None else "unnamed"
    return list(netdef.op), name if name is not None else netdef.name


def _escape_label(name):
    return json.dumps(name)   # quotes and escapes, so "/" and ":" are safe in dot ids


def GetOpNodeProducer(append_output, **kwargs):
    """A function (op, op_id) -> pydot.Node named "<name>/<type> (op#<id>)" [+ outputs]."""
    def op_node(op, op_id):
        label = "%s/%s (op#%d)" % (op.name, op.type, op_id) if op.name else "%s (op#%d)" % (op.type, op_id)
        if append_output:
            label += "".join("\n" + output for output in op.output)
        return pydot.Node(label, **kwargs)
    return op_node


def GetBlobNodeProducer(**kwargs):
    def blob_node(node_name, label):
        return pydot.Node(node_name, label=label, **kwargs)
    return blob_node


def GetPydotGraph(operators_or_net, name=None, rankdir="LR", op_node_producer=None,
                  blob_node_producer=None):
    op_node_producer = op_node_producer or GetOpNodeProducer(False, **OP_STYLE)
    blob_node_producer = blob_node_producer or GetBlobNodeProducer(**BLOB_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = Graph(name, rankdir=rankdir)
    current = {}                   # blob -> the node of its latest version
    versions = defaultdict(int)

    def blob_node(blob):
        return blob_node_producer(_escape_label(blob + str(versions[blob])), label=_escape_label(blob))

    for op_id, op in enumerate(operators):
        node = op_node_producer(op, op_id)
        graph.add_node(node)
        for blob in op.input:
            if blob not in current:
                current[blob] = blob_node(blob)
            graph.add_node(current[blob])
            graph.add_edge(pydot.Edge(current[blob], node))
        for blob in op.output:
            if blob in current:
                versions[blob] += 1
            current[blob] = blob_node(blob)
            graph.add_node(current[blob])
            graph.add_edge(pydot.Edge(node, current[blob]))
    return graph


def GetPydotGraphMinimal(operators_or_net, name=None, rankdir="LR", minimal_dependency=False,
                         op_node_producer=None):
    """Ops only, an edge from the op that last wrote each input. minimal_dependency: drop the
    edges that another parent already implies (a -> c when a -> b -> c)."""
    op_node_producer = op_node_producer or GetOpNodeProducer(False, **OP_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = Graph(name, rankdir=rankdir)
    writer = {}
    ancestors = defaultdict(set)
    for op_id, op in enumerate(operators):
        node = op_node_producer(op, op_id)
        graph.add_node(node)
        parents = [writer[b] for b in op.input if b in writer]
        for parent in parents:
            ancestors[node].add(parent)
            ancestors[node].update(ancestors[parent])
        for parent in parents:
            implied = any(parent in ancestors[other] for other in parents)
            if not (minimal_dependency and implied):
                graph.add_edge(pydot.Edge(parent, node))
        for blob in op.output:
            writer[blob] = node
    return graph


def GetOperatorMapForPlan(plan_def):
    return {plan_def.name + "_" + (net.name if net.HasField("name") else "network_%d" % i): net.op
            for i, net in enumerate(plan_def.network)}


def GetGraphInJson(operators_or_net, output_filepath):
    """Write {"nodes": [{"id", "label", "op_type"?}], "edges": [{"source", "target"}]}."""
    operators, _ = _rectify_operator_and_name(operators_or_net, None)
    blob_ids, counts = {}, defaultdict(int)
    nodes, edges = [], []
    for op in operators:
        op_id = len(nodes)
        nodes.append({"id": op_id, "label": op.name + "/" + op.type if op.name else op.type,
                      "op_type": op.type})
        for blob in op.input:
            key = blob + str(counts[blob])
            if key not in blob_ids:
                blob_ids[key] = len(nodes)
                nodes.append({"id": blob_ids[key], "label": blob})
            edges.append({"source": blob_ids[key], "target": op_id})
        for blob in op.output:
            if blob + str(counts[blob]) in blob_ids:
                counts[blob] += 1
            key = blob + str(counts[blob])
            blob_ids[key] = len(nodes)
            nodes.append({"id": blob_ids[key], "label": blob})
            edges.append({"source": op_id, "target": blob_ids[key]})
    with open(output_filepath, "w") as fh:
        json.dump({"nodes": nodes, "edges": edges}, fh)


_DUMMY_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
              b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe"
              b"\xa3\x5d\x8e\x11\x00\x00\x00\x00IEND\xaeB`\x82")


def GetGraphPngSafe(func, *args, **kwargs):
    """func(*args, **kwargs).create_png(), or a 1x1 PNG when rendering fails (as Caffe2)."""
    try:
        return func(*args, **kwargs).create_png()
    except Exception:  # noqa: BLE001 - Caffe2 returns a placeholder for any failure
        return _DUMMY_PNG
