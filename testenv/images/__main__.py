"""``python -m testenv.images [NAME ...]``: build what is missing, print each image as JSON.

``python -m testenv.images wheelhouse [--python 3.12]``: only fill ./wheelhouse,
for a ``docker build`` of the repository's Dockerfile on that Python.
"""

from __future__ import annotations

import argparse
import json
import sys

from testenv.images import base, build, wheelhouse
from testenv.images._cache import locked


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["wheelhouse"]:
        parser = argparse.ArgumentParser(prog="python -m testenv.images wheelhouse")
        parser.add_argument("--python", default=base.PYTHON_VERSION, help="X.Y")
        opts = parser.parse_args(args[1:])
        with locked():
            wheels = wheelhouse.ensure_wheelhouse(wheelhouse.all_extras(), opts.python)
        print(f"{len(wheels)} wheels in {wheelhouse.DEFAULT_DEST}")
        return 0
    parser = argparse.ArgumentParser(prog="python -m testenv.images", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(build.IMAGES))
    opts = parser.parse_args(args)
    unknown = sorted(set(opts.names) - set(build.IMAGES))
    if unknown:
        parser.error(f"no image {', '.join(unknown)} (there are {', '.join(build.IMAGES)})")
    images = build.ensure_images(opts.names or None)
    for name, image in images.items():
        size = image.archive.stat().st_size
        print(
            json.dumps(
                {"name": name, "ref": image.ref, "archive": str(image.archive), "bytes": size}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
