"""caffe2.python.models.resnet nets as real Caffe2 builds them (ops, args, params), as text.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python gen_model_fixtures.py OUTDIR
"""
import os
import sys

from caffe2.python import model_helper
from caffe2.python.models import resnet

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
CASES = {
    "resnet50_train": lambda m: resnet.create_resnet50(m, "data", 3, 10, label="label"),
    "resnet50_test": lambda m: resnet.create_resnet50(m, "data", 3, 10, is_test=True, no_bias=1),
    "resnet_32x32": lambda m: resnet.create_resnet_32x32(m, "data", 3, num_groups=1, num_labels=10),
    "resnext18": lambda m: resnet.create_resnext(m, "data", 3, 5, num_layers=18, num_groups=2,
                                                num_width_per_group=8, no_loss=True),
}
for name, build in CASES.items():
    model = model_helper.ModelHelper(name=name)
    build(model)
    for suffix, net in (("net", model.net), ("init", model.param_init_net)):
        with open(os.path.join(OUT, "%s_%s.pbtxt" % (name, suffix)), "w") as fh:
            fh.write(str(net.Proto()))
    with open(os.path.join(OUT, "%s_params.txt" % name), "w") as fh:
        fh.write("\n".join(str(p) for p in model.params) + "\n")
print("wrote", sorted(os.listdir(OUT)))
