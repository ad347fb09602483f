"""User-facing errors: one line that names the problem and the file or flag."""


class LabError(Exception):
    """A problem with the user's input. The CLI prints it on one line and exits with code 2."""

    exit_code = 2
