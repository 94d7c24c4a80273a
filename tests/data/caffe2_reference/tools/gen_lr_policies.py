"""Which Caffe solver lr_policy names real Caffe2's LearningRate op accepts, with the arguments
food101.train.config.lr_policy_args gives it. Run with the torch 1.4.0 Caffe2 (Python 3.7):

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python \
        tests/data/caffe2_reference/tools/gen_lr_policies.py tests/data/caffe2_reference/lr/policies.json

Writes {policy: {"accepted": bool, "lr_at_10": float or null, "error": str or null}}."""
import json
import sys

import numpy as np
from caffe2.python import core, workspace

CASES = {   # the arguments lr_policy_args makes for each Caffe policy
    "fixed": {},
    "step": {"stepsize": 3000, "gamma": 0.1},
    "multistep": {"stepvalue": [3000, 4500], "gamma": 0.1},
    "exp": {"gamma": 0.99},
    "inv": {"gamma": 0.1, "power": 0.75},
    "poly": {"power": 1.0, "max_iter": 5000},
    "sigmoid": {"gamma": 0.1, "stepsize": 100},
}


def main(path):
    out = {}
    for policy, args in CASES.items():
        workspace.ResetWorkspace()
        workspace.FeedBlob("it", np.array([10], dtype=np.int64))
        op = core.CreateOperator("LearningRate", ["it"], ["lr"], base_lr=-0.01, policy=policy, **args)
        try:
            workspace.RunOperatorOnce(op)
            out[policy] = {"accepted": True, "args": args,
                           "lr_at_10": float(np.asarray(workspace.FetchBlob("lr")).reshape(-1)[0]),
                           "error": None}
        except Exception as e:  # the op's enforce message
            out[policy] = {"accepted": False, "args": args, "lr_at_10": None,
                           "error": str(e).splitlines()[0]}
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
