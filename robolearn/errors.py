"""The one error type users see as a clean one-line message.

Library code raises `UserError` for bad input (a missing file, a wrong key, a
mismatched shape). The CLI prints its message on one line to stderr and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from a user: a path, a field, a value. The message names it."""
