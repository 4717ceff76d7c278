"""User-facing errors: one line that says what is wrong and how to fix it, exit code 2, no traceback."""


class UserError(Exception):
    """A mistake in the command, config or data layout that the user can fix."""

    exit_code = 2
