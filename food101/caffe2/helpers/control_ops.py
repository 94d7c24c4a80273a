"""brew.cond / brew.loop: If and While ops from models (control_ops_util.py builds them)."""
from food101.caffe2.control_ops_util import add_if_op, add_while_op


def cond(model, cond_blob, external_blobs, then_model, else_model=None):
    """Run then_model's net when `cond_blob` holds, else else_model's (if any)."""
    add_if_op(model.net, cond_blob, external_blobs, then_model.net,
              else_model.net if else_model else None)


def loop(model, cond_blob, external_blobs, loop_model, cond_model=None):
    """Run loop_model's net while `cond_blob` holds; cond_model's net recomputes it."""
    add_while_op(model.net, cond_blob, external_blobs, loop_model.net,
                 cond_model.net if cond_model else None)
