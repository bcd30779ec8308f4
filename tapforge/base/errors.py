"""The one error type users see: its message names the problem and the fix."""


class TapforgeError(Exception):
    """A user-facing error; the CLI prints it as one line and exits with status 2."""
