"""User errors: printed as one line naming the file and the problem, exit status 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, option); the CLI prints it and exits with status 2."""
