#!/usr/bin/env python
"""Download a Caffe2 Model Zoo model, verified against its published SHA-256.

    python tools/download_model.py squeezenet                      # -> models/squeezenet/
    python tools/download_model.py squeezenet --dest /data/squeezenet --base-url http://mirror/models

Files come from <base-url>/<model>/{predict_net.pb,init_net.pb,value_info.json}; an interrupted
download resumes on the next run; a file whose size or SHA-256 does not match is deleted and
reported (exit status 1). Expected checksums: models/<model>/checksums.json (or --checksums).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.zoo.download import (BASE_URL_ENV, DEFAULT_BASE_URL, KNOWN_CHECKSUMS,  # noqa: E402
                                  DownloadError, download_model)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=sorted(KNOWN_CHECKSUMS), help="Model Zoo model name")
    p.add_argument("--dest", help="target folder (default: models/<model>)")
    p.add_argument("--base-url", help="download site (default: $%s or %s)" % (BASE_URL_ENV, DEFAULT_BASE_URL))
    p.add_argument("--checksums", help="checksums.json to verify against (default: models/<model>/checksums.json)")
    p.add_argument("--force", action="store_true", help="download again even if verified files are present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        paths = download_model(args.model, dest=args.dest, base_url=args.base_url,
                               checksums=args.checksums, progress=not args.no_progress,
                               timeout=args.timeout, force=args.force)
    except DownloadError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    for name, path in paths.items():
        print("%-16s %s" % (name, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
