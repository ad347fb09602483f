"""Retake the TensorBoard screenshots of docs/profiling.md from an output folder, offline.

    .venv/bin/python docs/screenshots.py reports/example-cpu   # writes docs/tensorboard-*.png

Starts `python -m lab.tensorboard OUT` on a free port, drives a headless Chromium (Debian's
`chromium` package's /usr/lib/chromium/chromium; `--chromium PATH` for another) through the DevTools
protocol over a pipe (no extra Python package), and saves one PNG per view. Nothing is fetched
from the internet: what does not render offline is saved as it looks (the profiler plugin's
Overview waits for Google Charts for ever), so the pictures show what a user without a network
sees; the script says which views did not render. Linux only (the DevTools pipe is file
descriptors 3 and 4).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
WIDTH, HEIGHT = 1400, 900
PROFILER = "/data/plugin/pytorch_profiler/index.html"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
    f"--window-size={WIDTH},{HEIGHT}",
]
# (file stem, page, what to pick in the profiler plugin: [(a select's current value, option)])
VIEWS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("scalars", "/#scalars", []),
    ("images", "/#images", []),
    # Offline, the profiler plugin's app never gets past its loading spinner (it waits for
    # Google Charts from www.gstatic.com), whichever view is picked: one picture shows it.
    ("profiler", PROFILER, [("Overview", "Trace")]),
]


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved to descriptors >= 10, so the shell's `3<&N 4>&M` never overwrites
    one end with the other."""
    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved[0], moved[1]


class Chromium:
    """A headless Chromium spoken to with the DevTools protocol over its pipe."""

    def __init__(self, binary: str) -> None:
        to_child, self.writer = _high(os.pipe())
        self.reader, from_child = _high(os.pipe())

        self.profile = tempfile.mkdtemp(prefix="lab-shots-")
        # The protocol's fixed descriptors, 3 in and 4 out, set by the shell that execs it.
        plumb = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}'
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", plumb, binary, *FLAGS, f"--user-data-dir={self.profile}"],
            pass_fds=(to_child, from_child),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self.buffer = b""
        self.next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.reader, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe during {method}")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


# Opens the Material-UI select that shows `label` (its current value) and picks `option`;
# returns whether it found both (the plugin's page is a React app: no URL selects a view).
PICK = """
(async ([label, option]) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const select = [...document.querySelectorAll('[role=button][aria-haspopup=listbox]')]
    .find(e => e.textContent.trim() === label);
  if (!select) return false;
  select.dispatchEvent(
    new MouseEvent('mousedown', {bubbles: true, button: 0}));
  await sleep(500);
  const item = [...document.querySelectorAll('[role=option]')]
    .find(o => o.textContent.trim() === option);
  if (!item) return false;
  item.click();
  return true;
})(%s)
"""


# True while a Material-UI loading spinner is on the page (the profiler plugin's, offline).
SPINNER = "document.querySelector('.MuiCircularProgress-root') !== null"


def wait_for_runs(base: str, timeout: float = 300.0) -> None:
    """Until the profiler plugin has loaded every trace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/data/plugin/pytorch_profiler/runs") as reply:
                runs = json.loads(reply.read())
            if runs["runs"] and not runs["loading"]:
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError("TensorBoard did not load the traces in time")


def take(out: Path, binary: str, settle_s: float) -> list[Path]:
    from lab.tensorboard import free_port

    port = free_port()
    board = subprocess.Popen(
        # Relative to the checkout, so the pictures show "reports/...", not this machine's path.
        [sys.executable, "-m", "lab.tensorboard", os.path.relpath(out, REPO), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: torch-tb-profiler loads traces in spawned processes that
        # outlive a terminated TensorBoard; the group is ended whole below.
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    written = []
    try:
        wait_for_runs(base)
        for stem, page, picks in VIEWS:
            browser = Chromium(binary)  # a fresh page per view: no state carried over
            try:
                browser.call("Page.navigate", session=True, url=base + page)
                time.sleep(settle_s)
                for label, option in picks:
                    found = browser.evaluate(PICK % json.dumps([label, option]))
                    if not found:
                        print(f"{stem}: no {label!r} -> {option!r} on the page", file=sys.stderr)
                    time.sleep(settle_s)
                path = DOCS / f"tensorboard-{stem}.png"
                browser.screenshot(path)
                written.append(path)
                stuck = browser.evaluate(SPINNER)
                note = " (still loading: did not render)" if stuck else ""
                print(f"wrote {path.relative_to(REPO)}{note}")
            finally:
                browser.close()
    finally:
        os.killpg(board.pid, signal.SIGTERM)
        board.wait(timeout=30)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an output folder of python -m lab.ablate")
    parser.add_argument(
        "--chromium",
        default="/usr/lib/chromium/chromium",
        help="the browser binary (default: Debian's, behind its /usr/bin/chromium wrapper script, "
        "which does not hand the DevTools pipe on)",
    )
    parser.add_argument(
        "--settle", type=float, default=8.0, help="seconds to let each page render (default 8)"
    )
    args = parser.parse_args(argv)
    from lab.errors import LabError
    from lab.tensorboard import logdir_for

    try:
        logdir_for(args.out)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(
            f"error: {args.chromium}: no such browser (apt-get install chromium)", file=sys.stderr
        )
        return 2
    take(args.out.resolve(), args.chromium, args.settle)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
