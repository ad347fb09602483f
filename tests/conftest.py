"""Shared fixtures. Tests use the real CIFAR-10 beside the checkout (../shared/data), and a
decoded-data cache inside the repo so a test run never touches the user's ~/.cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
TEST_CACHE = REPO / ".pytest-lab-cache"

os.environ["LAB_CACHE"] = str(TEST_CACHE)
os.environ.setdefault("LAB_DATA", str(REAL_DATA))


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
    if not REAL_DATA.is_dir():
        pytest.fail(f"the real CIFAR-10 is missing at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def real_cifar(real_data_path):
    """The real data, decoded once per machine into the test cache."""
    from lab.train.data import load_cifar

    return load_cifar(real_data_path, progress=False)


STEP_NAMES = [
    "bn_dedupe",
    "smooth_lr",
    "cached_preprocessing",
    "single_worker",
    "bulk_rng",
    "main_thread_aug",
]


# Parts 2-8, after Part 1's steps (SPEC.md, "Page series").
SERIES_STEP_NAMES = [
    "batch_512",
    "fp32_batchnorm",
    "cutout",
    "batch_768",
    "resnet9",
    "gpu_augmentation",
    "layer_order",
    "label_smoothing",
    "celu",
    "ghost_batchnorm",
    "frozen_bn_scale",
    "whitening",
    "ema",
    "tta",
]

VARIANT_NAMES = ["baseline", *(f"+{name}" for name in STEP_NAMES)]


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_lab(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, module: str = "lab.ablate"
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
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
