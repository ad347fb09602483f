"""The package layout is the architecture (lab/__init__.py): each layer imports only the layers
below it, and the layers that read or write records import no torch, so a report, a comparison,
`--help` and `--list` start without the training stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent.parent / "lab"

# What each layer may import from the lab (besides itself, `lab` and `lab.errors`).
ALLOWED: dict[str, tuple[str, ...]] = {
    # The bottom: the registry knows no step; `import ablations` above it registers them.
    "recipe": (),
    # The record format (files, schemas, upgrades, the plan's job, the typed summary) stands on
    # nothing of the lab but the recipe's frozen vocabulary (the names the summary is made of).
    "records": ("lab.recipe.vocabulary", "lab.recipe.counters"),
    "train": ("lab.recipe",),
    "profiling": ("lab.recipe", "lab.train"),
    # The job imports `ablations`, the steps its variants apply (on Ray workers too).
    "engine": ("lab.recipe", "lab.records", "ablations", "lab.train", "lab.profiling"),
    # Analysis and rendering read records, plans and their file names, never the engine or the
    # training stack, and of the recipe only what the record schema fixes (FROZEN_VOCABULARY).
    "analysis": ("lab.recipe.vocabulary", "lab.recipe.counters", "lab.records"),
    "render": ("lab.recipe.vocabulary", "lab.recipe.counters", "lab.records", "lab.analysis"),
}
# What a report says about a step or the article travels in the job's plan.json: the layers that
# rebuild a report from records never import the live registry, the article's figures of the
# day or the steps (tests/test_reports_from_records.py proves the effect).
LIVE_FACTS = ("lab.recipe.registry", "lab.recipe.article", "ablations")
TORCH_FREE = ("recipe", "records", "analysis", "render")
CLIS = ("lab.ablate", "lab.report", "lab.compare", "lab.tensorboard", "lab.doctables", "lab.bench")


def _lab_imports(path: Path) -> set[str]:
    """Every lab or ablations module the file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in ("lab", "ablations"):
                # `from lab.records import outputs` imports lab.records.outputs
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in ("lab", "ablations")}
    return found


def _module_files(layer: str) -> list[Path]:
    return sorted((LAB / layer).glob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    own = (f"lab.{layer}", "lab.errors", "lab.REPO_ROOT")
    allowed = own + ALLOWED[layer]
    wrong = {
        f"{path.name} imports {name}"
        for path in _module_files(layer)
        for name in _lab_imports(path)
        if name != "lab" and not name.startswith(allowed)
    }
    assert not wrong, sorted(wrong)


def test_the_steps_import_only_the_recipe():
    """`ablations/` sits just above the recipe: a step transforms a `Config`, registered in
    the registry, and needs nothing else of the lab."""
    wrong = {
        f"{path.name} imports {name}"
        for path in sorted((LAB.parent / "ablations").glob("*.py"))
        for name in _lab_imports(path)
        if name != "lab" and not name.startswith(("lab.recipe", "lab.errors", "ablations"))
    }
    assert not wrong, sorted(wrong)


def test_importing_the_registry_imports_no_step():
    """The registry stays cheap to import: the steps register when `ablations` is imported."""
    code = (
        "import sys, lab.recipe.registry, lab.recipe.variant; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ablations'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=LAB.parent, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("layer", ["analysis", "render"])
def test_reports_import_no_live_facts(layer):
    wrong = {
        f"{path.name} imports {name}"
        for path in _module_files(layer)
        for name in _lab_imports(path)
        if name.startswith(LIVE_FACTS)
    }
    assert not wrong, sorted(wrong)


def test_rebuilding_a_report_loads_no_live_facts():
    """Not even indirectly: the CLIs that rebuild reports and compare jobs never load them."""
    code = (
        "import sys, lab.report, lab.compare, lab.tensorboard; "
        f"print(sorted(m for m in sys.modules if m.startswith({LIVE_FACTS!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=LAB.parent, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_module_belongs_to_a_layer_or_is_a_cli():
    top = {p.stem for p in LAB.glob("*.py")} - {"__init__", "__main__", "errors"}
    assert {f"lab.{name}" for name in top} == set(CLIS)
    packages = {p.name for p in LAB.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def _torch_loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=LAB.parent, capture_output=True, text=True, check=True
    )
    return eval(result.stderr)  # a printed list of module names


def test_records_layers_import_no_torch():
    modules = [
        f"lab.{layer}.{path.stem}"
        for layer in TORCH_FREE
        for path in _module_files(layer)
        if path.stem != "__init__"
    ]
    assert _torch_loaded_after(f"import {', '.join(modules)}, lab.report, lab.compare") == []


def test_help_and_list_start_without_torch():
    """`--help` and `--list` import the CLI and discover every step: no torch (measured: 1.4 s
    of start-up with torch, 0.13 s without, on the 2-core machine)."""
    statement = (
        "import lab.ablate, contextlib, io; "
        "out = io.StringIO(); "
        "contextlib.redirect_stdout(out).__enter__(); "
        "lab.ablate.main(['--list'])"
    )
    assert _torch_loaded_after(statement) == []


def _nested_imports(path: Path) -> list[str]:
    """Imports that are not statements of the module's top level (inside a function, a class,
    or an `if TYPE_CHECKING:` block)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    return [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top
    ]


def test_the_records_layer_imports_everything_at_the_top():
    """The record format needs no torch, so it has no reason to defer an import: none hides
    in a function or behind TYPE_CHECKING."""
    nested = [name for path in _module_files("records") for name in _nested_imports(path)]
    assert not nested, nested
