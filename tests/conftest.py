"""Shared fixtures and helpers.

Data: the tests find real CIFAR-10 the way the lab does (docs/data.md): `$LAB_DATA`, else the
folder beside the checkout (`../shared/data/cifar10-jpeg`), else the lab's own MD5-checked
download of the official archive into the test cache. Without a network that last step skips the
tests that need data, saying why, instead of failing them. Decoded arrays are cached inside the
repo (`.pytest-lab-cache`), so a test run never touches the user's ~/.cache.

One fixture owns the data: `real_data_path` (and `real_cifar`, `all_out`, `loo_out` built on
it). A test or fixture that trains, loads or resolves data without requesting it finds none, on
every machine: `$LAB_DATA` points at `NO_DATA_REQUESTED` except inside a test that requested the
fixture (`_data_only_through_the_fixture`), so forgetting the fixture fails loudly here, not
only on a data-less clone where the fixture would have skipped.

Waiting: no test waits for a time sized to a quiet machine. `wait_for` waits for an event (a
record written, a process's exit) and gives up only after `HUNG_S` seconds in which nothing
happened at all; `LabProcess` runs a CLI in a real process and calls it hung on the same rule
(no output and no change to its output folder for `HUNG_S`), however long it takes otherwise.

Step names come from the registry (`lab.recipe.registry`), the one owner of the step order.

The CLIs are called in-process through their `main(argv)` (`call_cli`), which is what a user's
`python -m` runs after start-up; a few tests keep a real subprocess (`run_lab`) where the process
itself matters: the exit status of an interpreter, a signal, a server, the end-to-end job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

import ablations  # noqa: F401  (registers the steps: the registry imports none)
from lab.recipe.presets import PRESETS
from lab.recipe.registry import series_steps

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = REPO / ".pytest-lab-cache"

os.environ["LAB_CACHE"] = str(TEST_CACHE)

# The tests' Ctrl-C is a terminal's: SIGINT at its default disposition in the lab's processes.
# A suite started in the background (`make test &`) inherits SIGINT ignored from the shell; an
# ignored signal stays ignored across exec, so Python installs no KeyboardInterrupt handler and
# the ctrl-c tests' jobs and servers never stop (measured: the job ran to its last record, the
# TensorBoard server until the hang rule killed it). A handler here is reset to the default in
# every child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Where `$LAB_DATA` points for a test that did not request `real_data_path`: a folder that never
# exists, named so that the lab's error ("<path>: no such file or directory") says what to do.
NO_DATA_REQUESTED = TEST_CACHE / "no-data (request the real_data_path fixture, tests/conftest.py)"
# The user's own `$LAB_DATA`, read before the guard replaces it (this module may be imported a
# second time as `tests.conftest`: the first reading stands).
_USER_LAB_DATA_KEY = "LAB_TESTS_USER_LAB_DATA"
if os.environ.get("LAB_DATA") != str(NO_DATA_REQUESTED):
    os.environ[_USER_LAB_DATA_KEY] = os.environ.get("LAB_DATA", "")
os.environ["LAB_DATA"] = str(NO_DATA_REQUESTED)

STEP_NAMES = [s.name for s in series_steps("part1")]  # the seed article's steps (Part 1)
SERIES_STEP_NAMES = [s.name for s in series_steps("full") if s.name not in STEP_NAMES]
AIRBENCH_STEP_NAMES = [s.name for s in series_steps("airbench")]  # chapter 2
# The smoke preset with enough images for a series: Page's final recipe, which every series
# passes through, trains at batch 512 with the last partial batch dropped (docs/presets.md).
SERIES_SMOKE = dataclasses.replace(PRESETS["smoke"].config, train_images=1100)
VARIANT_NAMES = ["baseline", *(f"+{name}" for name in STEP_NAMES)]


# ----------------------------------------------------------------------------- data


def find_test_data(say=lambda line: None, **download) -> Path:
    """Real CIFAR-10 as the lab finds it: `$LAB_DATA`, the folder beside the checkout, the
    cache, else the official archive downloaded and MD5-checked (`download` may name another
    `url` and `md5`, as the fallback's own test does)."""
    from lab.train.data import find_or_fetch_data

    return find_or_fetch_data(None, say=say, **download)


def data_or_skip(**download) -> Path:
    """`find_test_data`, skipping (with the reason) only when the archive cannot be fetched."""
    from lab.train.data import DownloadFailed

    try:
        return find_test_data(say=lambda line: print(line, file=sys.stderr), **download)
    except DownloadFailed as error:
        pytest.skip(f"no CIFAR-10 beside the checkout or in $LAB_DATA, and {error}")


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` skip cleanly where no GPU is present."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if not torch.cuda.is_available():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The one way a test gets real CIFAR-10: found as the lab finds it (with the user's own
    `$LAB_DATA`), or the test skips saying why. Inside a test that requests it (directly or
    through another fixture) `$LAB_DATA` names it, for in-process CLIs and subprocesses alike;
    a session fixture that runs a job passes it on with `data_env`."""
    with pytest.MonkeyPatch.context() as env:
        user_data = os.environ.get(_USER_LAB_DATA_KEY)
        if user_data:
            env.setenv("LAB_DATA", user_data)
        else:
            env.delenv("LAB_DATA", raising=False)
        return data_or_skip()


def data_env(path: Path) -> dict[str, str]:
    """The environment for a job on the data `real_data_path` found."""
    return {"LAB_DATA": str(path)}


@pytest.fixture(autouse=True)
def _data_only_through_the_fixture(request, monkeypatch) -> None:
    """`$LAB_DATA` is the real data only in a test that requested `real_data_path`; in any other
    it is `NO_DATA_REQUESTED`, so a test that uses data without the fixture (which skips where
    there is none) fails on every machine, naming the fixture."""
    if "real_data_path" in request.fixturenames:
        monkeypatch.setenv("LAB_DATA", str(request.getfixturevalue("real_data_path")))
    else:
        monkeypatch.setenv("LAB_DATA", str(NO_DATA_REQUESTED))


@pytest.fixture(scope="session")
def real_cifar(real_data_path):
    """The real data, decoded once per machine into the test cache."""
    from lab.train.data import load_cifar

    return load_cifar(real_data_path, progress=False)


# ----------------------------------------------------------------------------- the CLIs


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# A test calls something hung when nothing at all happened for this long: no output, no file
# written, no awaited event. A smoke run takes seconds on a quiet machine and a busy machine is a
# few times slower, so this bounds only a real hang, never a slow machine.
HUNG_S = 600.0


def wait_for(
    predicate: Callable[[], object],
    what: str,
    activity: Callable[[], object] = lambda: None,
    hung_s: float = HUNG_S,
    poll_s: float = 0.05,
) -> object:
    """Poll `predicate()` until it returns a true value, and return that value. It waits for an
    event, not for a time: it fails, naming `what`, only after `hung_s` seconds in which the
    predicate never held and `activity()` (a reading that changes while the awaited thing makes
    progress: a file's size, a process's output) never changed."""
    last, quiet_since = activity(), time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        now = activity()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > hung_s:
            raise AssertionError(f"waited for {what}: nothing happened for {hung_s:.0f} s")
        time.sleep(poll_s)


def folder_state(folder: Path | None) -> tuple:
    """(path, size, mtime) of every file under `folder`: changes whenever a job writes."""
    if folder is None or not folder.is_dir():
        return ()
    return tuple(sorted(filter(None, map(_file_state, folder.rglob("*")))))


def _file_state(path: Path) -> tuple[str, int, int] | None:
    """(path, size, mtime), or None for a file gone since it was listed: the profiler writes a
    trace to a `.tmp` file and renames it, so a listing can name a file that no longer is."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _out_folder(args: Iterable[str]) -> Path | None:
    """The output folder a lab command names (`--out` or `--resume`), if any."""
    args = list(args)
    for flag in ("--out", "--resume"):
        if flag in args[:-1]:
            return Path(args[args.index(flag) + 1])
    return None


class LabProcess:
    """`python -m <module> args...` in a new process, as a user would run it, its output read
    as it comes (so a full pipe never blocks it), for tests that act on it while it runs.
    `own_session` starts it in a session of its own, so that `leftovers` can find any process
    it started that outlived it (a server's workers)."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        module: str = "lab.ablate",
        own_session: bool = False,
    ) -> None:
        self.args = [module, *args]
        self.out = _out_folder(args)
        self.own_session = own_session
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=own_session,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._read, args=(stream, self.lines[name]), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def activity(self) -> tuple:
        """Changes whenever the process prints or writes to its output folder."""
        return len(self.lines["stdout"]), len(self.lines["stderr"]), folder_state(self.out)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait_until(self, predicate: Callable[[], object], what: str) -> object:
        """`wait_for(predicate)` while the process runs; its exit first is a failure."""
        value = wait_for(lambda: predicate() or self.exited(), what, self.activity)
        if not predicate():
            raise AssertionError(f"{what}: the process exited first\n{self.stderr()}")
        return value

    def stderr(self) -> str:
        return "".join(self.lines["stderr"])

    def leftovers(self) -> bool:
        """Whether any process of its session is still alive (`own_session` only)."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _kill(self) -> None:
        if self.own_session and self.leftovers():
            os.killpg(self.process.pid, signal.SIGKILL)
        elif not self.exited():
            self.process.kill()
        self.process.wait()

    def finish(self) -> subprocess.CompletedProcess:
        """Wait for the exit and the end of its output (killing it only when it hung,
        `wait_for`'s rule); the end of the output comes when every process that holds it has
        exited, the process's own children included."""
        name = " ".join(self.args)

        def output_ended() -> bool:
            return not any(reader.is_alive() for reader in self._readers)

        try:
            wait_for(self.exited, f"the exit of {name}", self.activity)
            wait_for(output_ended, f"the end of the output of {name} (a child still holds it)")
        except AssertionError as hung:
            self._kill()
            raise AssertionError(f"{hung}\n{self.stderr()}") from None
        return subprocess.CompletedProcess(
            self.args,
            self.process.returncode,
            "".join(self.lines["stdout"]),
            self.stderr(),
        )


def run_lab(
    *args: str, env: dict[str, str] | None = None, module: str = "lab.ablate"
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in a new process, as a user would, to its exit: there
    is no time limit, only `LabProcess`'s rule for a hung process."""
    return LabProcess(*args, env=env, module=module).finish()


def call_cli(*args: str, module: str = "lab.ablate") -> subprocess.CompletedProcess:
    """`<module>.main(args)` in this process, its exit code and printed output captured like
    `run_lab`'s (argparse's own exits included)."""
    main = importlib.import_module(module).main
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    return subprocess.CompletedProcess([module, *args], code, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, a single `error:` line naming the problem, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ----------------------------------------------------------------------------- shared jobs

ALL_ROUNDS = 3  # the fewest the statistics assess (a 95% interval needs 3 rounds)


def rounds_of(out: Path) -> tuple[int, int]:
    """(clean rounds, rounds run) of a finished job: a round the lab judged disturbed is left
    out of the analysis and replaced, so a noisy machine can run more rounds than asked for."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] + len(summary["disturbed_rounds"]) == summary["rounds_run"]
    return summary["rounds"], summary["rounds_run"]


def assert_verdict_follows_interval(
    estimate: float, ci95: list[float] | None, verdict: str, null: float, rounds: int
) -> None:
    """What a real job's verdict must be, whatever the machine's noise: with enough clean
    rounds an interval around the estimate, "significant" exactly when it excludes `null` (0
    for a saving, 1 for a ratio); with fewer (a busy machine's disturbed rounds left out), no
    interval and "not assessed". Real timings never promise a particular verdict."""
    from lab.analysis.stats import MIN_ROUNDS, NOT_SIGNIFICANT, SIGNIFICANT, not_assessed

    if rounds < MIN_ROUNDS:
        assert ci95 is None and verdict == not_assessed(), (rounds, ci95, verdict)
        return
    assert ci95 is not None, (rounds, verdict)
    low, high = ci95
    assert low <= estimate <= high, (low, estimate, high)
    assert verdict == (NOT_SIGNIFICANT if low <= null <= high else SIGNIFICANT), (ci95, verdict)


LOO_STEPS = ["single_worker", "main_thread_aug"]
LOO_ROUNDS = 3


@pytest.fixture(scope="session")
def all_out(tmp_path_factory, real_data_path):
    """The suite's end-to-end job: `python -m lab.ablate --all` on the smoke preset in a real
    process, profiled, with the warm-up and the control (read by several test files)."""
    out = tmp_path_factory.mktemp("all") / "out"
    args = ["--all", "--preset", "smoke", "--rounds", str(ALL_ROUNDS), "--out", str(out)]
    result = run_lab(*args, env=data_env(real_data_path))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def loo_out(tmp_path_factory, real_data_path):
    """A smoke job with `--leave-one-out`, unprofiled and without the warm-up."""
    out = tmp_path_factory.mktemp("loo") / "out"
    args = ["--steps", ",".join(LOO_STEPS), "--leave-one-out", "--preset", "smoke"]
    args += ["--rounds", str(LOO_ROUNDS), "--no-profile", "--no-warmup", "--out", str(out)]
    result = run_lab(*args, env=data_env(real_data_path))
    assert result.returncode == 0, result.stderr
    return out
