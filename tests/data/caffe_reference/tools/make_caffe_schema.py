"""Write food101/interop/caffe/schema_table.py from BVLC's caffe.proto.

The field numbers, labels, types and defaults of caffe.proto are facts a .caffemodel reader
needs; this script copies them into the table format food101/caffe2/proto/schema.py turns into
descriptors (the same format caffe2_pb2.py uses), so the package carries no generated _pb2 code
and no .proto parser. Run it again only if BVLC's schema changes:

    python tests/data/caffe_reference/tools/make_caffe_schema.py ../shared/caffe_nets/caffe.proto
"""
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
OUT = os.path.join(REPO, "food101", "interop", "caffe", "schema_table.py")
SCALARS = {"double", "float", "int64", "uint64", "int32", "uint32", "bool", "string", "bytes"}


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def parse(text):
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[A-Za-z_][\w.]*|-?[\d.]+(?:e-?\d+)?|[{}=;\[\],]', strip_comments(text))
    messages, enums, fields = {}, {}, []
    stack, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("message", "enum"):
            name = ".".join([s[1] for s in stack] + [tokens[i + 1]])
            stack.append((tok, name))
            (messages if tok == "message" else enums)[name] = []
            i += 3
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok in ("syntax", "package", "option"):
            i = tokens.index(";", i) + 1
        elif stack and stack[-1][0] == "enum":
            enums[stack[-1][1]].append((tok, int(tokens[i + 2])))
            i = tokens.index(";", i) + 1
        else:
            end = tokens.index(";", i)
            label, type_name, name, _, number = tokens[i:i + 5]
            options = tokens[i + 5:end]
            fields.append((stack[-1][1], label, type_name, name, int(number), options))
            i = end + 1
    for owner, label, type_name, name, number, options in fields:
        if type_name not in SCALARS:
            type_name = resolve(type_name, owner, messages, enums)
        opts = []
        body = [t for t in options if t not in "[],"]
        for k in range(0, len(body), 3):
            key, _, value = body[k:k + 3]
            opts.append("%s = %s" % (key, value.strip("\"'") if key == "default" else value))
        line = "%s %s %s = %d" % (label, type_name, name, number)
        if opts:
            line += " [%s]" % ", ".join(opts)
        messages[owner].append(line)
    return messages, enums


def resolve(type_name, owner, messages, enums):
    """A type name as written inside `owner` -> its full name (innermost scope first)."""
    scope = owner.split(".")
    while True:
        candidate = ".".join(scope + [type_name])
        if candidate in messages or candidate in enums:
            return candidate
        if not scope:
            raise SystemExit("cannot resolve type %r in %s" % (type_name, owner))
        scope = scope[:-1]


def main(path):
    with open(path) as f:
        messages, enums = parse(f.read())
    out = ['"""BVLC Caffe\'s schema (caffe.proto, package ``caffe``) as a table: field numbers,',
           "labels, types and defaults copied by tests/data/caffe_reference/tools/make_caffe_schema.py",
           "from BVLC caffe.proto (master). Read by food101.interop.caffe.caffe_pb2. Do not edit.",
           '"""', "", "ENUMS = {"]
    for name, values in enums.items():
        out.append("    %r: %r," % (name, values))
    out += ["}", "", "MESSAGES = {"]
    for name, lines in messages.items():
        out.append('    "%s": """' % name)
        out += ["        " + line for line in lines]
        out.append('    """,')
    out.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", OUT, len(messages), "messages", len(enums), "enums")


if __name__ == "__main__":
    main(sys.argv[1])
