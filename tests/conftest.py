"""Shared fixtures and helpers.

Data: the tests find real CIFAR-10 the way the lab does (docs/data.md): `$LAB_DATA`, else the
folder beside the checkout (`../shared/data/cifar10-jpeg`), else the lab's own MD5-checked
download of the official archive into the test cache. Without a network that last step skips the
tests that need data, saying why, instead of failing them. Decoded arrays are cached inside the
repo (`.pytest-lab-cache`), so a test run never touches the user's ~/.cache.

Step names come from the registry (`lab.recipe.registry`), the one owner of the step order.

The CLIs are called in-process through their `main(argv)` (`call_cli`), which is what a user's
`python -m` runs after start-up; a few tests keep a real subprocess (`run_lab`) where the process
itself matters: the exit status of an interpreter, a signal, a server, the end-to-end job.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ablations  # noqa: F401  (registers the steps: the registry imports none)
from lab.recipe.registry import series_steps

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = REPO / ".pytest-lab-cache"

os.environ["LAB_CACHE"] = str(TEST_CACHE)

STEP_NAMES = [s.name for s in series_steps("part1")]  # the seed article's steps (Part 1)
SERIES_STEP_NAMES = [s.name for s in series_steps("full") if s.name not in STEP_NAMES]
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
    path = data_or_skip()
    os.environ["LAB_DATA"] = str(path)  # subprocesses and in-process CLIs use the same data
    return path


@pytest.fixture(scope="session")
def real_cifar(real_data_path):
    """The real data, decoded once per machine into the test cache."""
    from lab.train.data import load_cifar

    return load_cifar(real_data_path, progress=False)


# ----------------------------------------------------------------------------- the CLIs


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_lab(
    *args: str, env: dict[str, str] | None = None, timeout: float = 1800, module: str = "lab.ablate"
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in a new process, as a user would. The timeout only
    stops a hung process: the suite's job takes minutes on a busy 2-core machine."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


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
    return subprocess.CompletedProcess(
        [module, *args], code, stdout.getvalue(), stderr.getvalue()
    )


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
LOO_STEPS = ["single_worker", "main_thread_aug"]
LOO_ROUNDS = 3


@pytest.fixture(scope="session")
def all_out(tmp_path_factory, real_data_path):
    """The suite's end-to-end job: `python -m lab.ablate --all` on the smoke preset in a real
    process, profiled, with the warm-up and the control (read by several test files)."""
    out = tmp_path_factory.mktemp("all") / "out"
    result = run_lab("--all", "--preset", "smoke", "--rounds", str(ALL_ROUNDS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def loo_out(tmp_path_factory, real_data_path):
    """A smoke job with `--leave-one-out`, unprofiled and without the warm-up."""
    out = tmp_path_factory.mktemp("loo") / "out"
    args = ["--steps", ",".join(LOO_STEPS), "--leave-one-out", "--preset", "smoke"]
    args += ["--rounds", str(LOO_ROUNDS), "--no-profile", "--no-warmup", "--out", str(out)]
    result = run_lab(*args)
    assert result.returncode == 0, result.stderr
    return out
