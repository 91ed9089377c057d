"""The one exception type the command line turns into a one-line error."""


class FusebenchError(Exception):
    """A user-facing error: bad model, missing tool, board too small, ...

    The message is printed as one line, without a traceback, and the command
    exits non-zero."""
