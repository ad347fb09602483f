"""`python -m lab.compare OUT_A OUT_B`: two result sets side by side (this machine against
another, before and after a code change, a CPU against a GPU).

Per variant: the time ratio B/A (geometric means of the runs) with a 95% interval. Per step: its
saving in A and in B, and whether they differ. Runs of two jobs share no rounds, so these
comparisons are *unpaired* (Welch t intervals on log times, or on the jobs' per-round
log-ratios for a step's saving), and they carry any drift between the two jobs: wider than a
job's own paired intervals, and "not significant" wherever the data do not show a difference.
Everything is computed from the two folders' records alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.analysis.compare import compare
from lab.errors import LabError
from lab.render.compare import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.compare",
        description=__doc__.split("\n\n")[0],
        epilog="Documentation: docs/statistics.md (comparing result sets).",
    )
    parser.add_argument("out_a", metavar="OUT_A", help="an output folder of python -m lab.ablate")
    parser.add_argument("out_b", metavar="OUT_B", help="another one, of the same steps")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    try:
        result = compare(Path(args.out_a), Path(args.out_b))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
