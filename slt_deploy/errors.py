"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits non-zero."""


class SltError(Exception):
    """A problem with the user's input: says what is wrong, where, and how to fix it."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(what if not fix else f"{what} (fix: {fix})")
