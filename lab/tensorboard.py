"""`python -m lab.tensorboard OUT`: serve OUT/tb (profiler traces, scalars, the waterfall) with
TensorBoard on 127.0.0.1 and print the URL. Nothing listens on other interfaces unless
`--host` says so."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from lab.errors import LabError
from lab.records import outputs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def logdir_for(out: Path) -> Path:
    logdir = out / outputs.TENSORBOARD
    if not logdir.is_dir():
        raise LabError(
            f"{out}: no {outputs.TENSORBOARD}/ folder (run python -m lab.ablate without "
            "--no-profile)"
        )
    return logdir


def serve(out: Path, host: str, port: int) -> str:
    """Start TensorBoard in this process (background threads); return its URL."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(
        argv=[
            None,
            "--logdir",
            str(logdir_for(out)),
            "--host",
            host,
            "--port",
            str(port),
            "--reload_interval",
            "5",
        ]
    )
    try:
        return board.launch()
    except program.TensorBoardServerException as error:
        raise LabError(f"--port {port}: {error.msg}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tensorboard", description=__doc__)
    parser.add_argument("out", help="an output folder of python -m lab.ablate")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        url = serve(Path(args.out), args.host, args.port or free_port(args.host))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"TensorBoard: {url}#pytorch_profiler  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
