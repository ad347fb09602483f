"""Which code and which command wrote a record: the checkout's revision, the hash of the
harness and step sources, the command line, the CPU's model. No torch: the CLIs' torch-free
paths (`--help`, `--list`, `--resume`'s checks) call these too."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from pathlib import Path

import lab

REPO_ROOT = lab.REPO_ROOT
CODE_DIRS = ("lab", "ablations")


def _git(*args: str) -> str:
    """A git command's output in the checkout (raises when git or the checkout is missing)."""
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def git_revision() -> str | None:
    """`git rev-parse HEAD`, with `+dirty` when tracked files differ; None outside a checkout."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def code_hash() -> str:
    """Hash of the harness and step sources: two runs with the same hash ran the same code."""
    digest = hashlib.sha256()
    for directory in CODE_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line() -> str:
    """How this process was started, as a user would type it (`python -m lab.ablate ...`)."""
    program = Path(sys.argv[0])
    if program.name in ("ablate.py", "report.py") and program.parent.name == "lab":
        return " ".join(["python -m lab." + program.stem, *sys.argv[1:]])
    return " ".join([program.name, *sys.argv[1:]])
