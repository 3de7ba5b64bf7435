"""`python -m edge_signs` and the `edge-signs` command.

The CLI imports numpy, OpenCV and the rest at start-up; when one of them cannot be
imported (OpenCV without libGL on Raspberry Pi OS Lite, a package built for another
numpy), the user gets one line with the fix instead of a traceback.
"""

from __future__ import annotations

import sys

from edge_signs.import_hints import explain_import_error


def main() -> None:
    try:
        from edge_signs.cli import main as cli
    except (ImportError, ValueError) as exc:  # ValueError: "numpy.dtype size changed" from an ABI mismatch
        print(f"edge-signs: error: {explain_import_error(exc)}", file=sys.stderr)
        sys.exit(1)
    cli()


if __name__ == "__main__":
    main()
