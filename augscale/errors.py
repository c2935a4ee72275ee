"""The base of every error a user can fix: the CLI prints its message (no traceback) and exits 2."""


class AugscaleError(Exception):
    """An error with a message that says what is wrong and how to fix it."""
