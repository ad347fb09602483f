"""One module per speedup step; each registers itself with `lab.recipe.registry.register_step`.

Importing this package imports every module in it, so `import ablations` registers every step:
the CLIs, the engine's job and the tests do it where they need the steps; the registry itself
imports no step (it is the bottom layer). Adding a step is adding a file here (see
docs/writing-a-step.md).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
