"""What every tool's command line shares: `--gpu [ID]` that never swallows a positional.

argparse gives an option with an optional value (`nargs="?"`) the next word whatever it is, so
`predict.py --model M --gpu pizza.jpg` read "pizza.jpg" as the device id. `ToolParser` reads
`--gpu` followed by something that is not a device number as `--gpu 0` and leaves the word for
the positionals."""
import argparse
import sys

GPU_FLAG = "--gpu"


def _is_device_id(word):
    return word.isdigit()


def normalize_gpu(argv, flag=GPU_FLAG):
    """`--gpu WORD` with WORD not a device number -> `--gpu=0 WORD`; everything else as it is."""
    out, words = [], list(argv)
    for k, word in enumerate(words):
        if word == flag and (k + 1 == len(words) or not _is_device_id(words[k + 1])):
            out.append(flag + "=0")
        else:
            out.append(word)
    return out


def gpu_id(text):
    """argparse type of --gpu: a CUDA device number."""
    if not _is_device_id(text):
        raise argparse.ArgumentTypeError("expected a CUDA device number (0, 1, ...), got %r" % text)
    return int(text)


class ToolParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose --gpu (added with add_gpu) takes an id only when one follows."""

    def add_gpu(self, help_text="run on CUDA device ID (default 0)", group=None):
        return (group or self).add_argument(GPU_FLAG, nargs="?", const=0, type=gpu_id,
                                            metavar="ID", help=help_text)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(normalize_gpu(args), namespace)


def cuda_problem(device_id):
    """None when CUDA device `device_id` can be used, else the reason, for a clear error."""
    import torch
    if not torch.cuda.is_available():
        return ("--gpu was given but no CUDA GPU is available (torch.cuda.is_available() is "
                "False, torch %s%s); run on the CPU without --gpu"
                % (torch.__version__, "" if torch.version.cuda else ", a CPU-only build"))
    count = torch.cuda.device_count()
    if device_id >= count:
        return "--gpu %d: only %d CUDA device(s) exist (ids 0..%d)" % (device_id, count, count - 1)
    return None
