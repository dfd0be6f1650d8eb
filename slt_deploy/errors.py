"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits non-zero."""


class SltError(Exception):
    """A problem with the user's input: says what is wrong, where, and how to fix it."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(what if not fix else f"{what} (fix: {fix})")


def first_line(e: BaseException, limit: int = 120) -> str:
    """The first non-empty line of an exception's message, at most `limit` characters, for quoting a library's
    error inside ours ("" when the message is empty: some h5py/nir errors have none)."""
    lines = [s for s in str(e).splitlines() if s.strip()]
    return lines[0][:limit] if lines else ""


def brief(e: BaseException, limit: int = 120) -> str:
    """'TypeName: first line' of an exception, or just 'TypeName' when its message is empty."""
    line = first_line(e, limit)
    return f"{type(e).__name__}: {line}" if line else type(e).__name__
