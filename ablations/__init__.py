"""One module per speedup step; each registers itself with `lab.recipe.registry.register_step`.

Adding a step is adding a file here (see docs/writing-a-step.md).
"""
