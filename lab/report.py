"""`python -m lab.report OUT`: rebuild summary.json, the charts, report.md and the TensorBoard
scalars from the records alone (OUT/results.jsonl; OUT/profile.jsonl and OUT/sessions.jsonl
when present). Nothing here imports the training stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.errors import LabError
from lab.records import outputs
from lab.render.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report", description=__doc__)
    parser.add_argument("out", help="an output folder of python -m lab.ablate")
    args = parser.parse_args(argv)
    try:
        write_report(Path(args.out))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {Path(args.out) / outputs.REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
