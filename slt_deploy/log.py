"""The CLI's output conventions in one place (docs/cli.md):

- stdout carries the RESULT only (a command's text, or its `--json` document);
- progress and info go through Python logging (logger "slt_deploy") to stderr: `--quiet` keeps warnings only,
  `--verbose` adds debug lines; `setup()` is the one logger setup, run once per command by options.common;
- progress bars (tqdm) only when stderr is a terminal and the level shows info: `progress()` decides, every bar in
  the package is made through it, so logs and pipes never get `\\r`;
- speed ratios read as people say them: `speed(17.3)` -> "17.3x faster", `speed(0.47)` -> "2.1x slower".

Light on purpose (stdlib only; tqdm is imported when a bar is made): `slt-deploy --help` and `inspect` load it."""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import sys

LOGGER = "slt_deploy"
log = logging.getLogger(LOGGER)


class _Stderr(logging.Handler):
    """Writes to the CURRENT sys.stderr (pytest and click's CliRunner swap it), through tqdm.write while a bar is on
    screen so the message does not tear the bar."""

    def emit(self, record):
        try:
            msg = self.format(record)
            tq = sys.modules.get("tqdm")
            if tq is not None and getattr(tq.tqdm, "_instances", None):
                tq.tqdm.write(msg, file=sys.stderr)
            else:
                sys.stderr.write(msg + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command (closed pipe, ...)
            self.handleError(record)


class _Format(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"debug: {msg}"
        return msg


def setup(quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """The one logger setup: level WARNING (--quiet), DEBUG (--verbose) or INFO; idempotent."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for h in list(log.handlers):
        if isinstance(h, _Stderr):
            log.removeHandler(h)
    h = _Stderr()
    h.setFormatter(_Format())
    log.addHandler(h)
    log.setLevel(level)
    log.propagate = False
    return log


def info(msg: str):
    log.info(msg)


def show_progress() -> bool:
    """Bars only for a person watching: stderr is a terminal and info is shown (not --quiet). SLT_PROGRESS=0 turns
    them off anywhere."""
    if os.environ.get("SLT_PROGRESS", "") == "0" or not log.isEnabledFor(logging.INFO):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable=None, *, total=None, desc: str | None = None, enabled: bool = True, **kw):
    """A tqdm bar on stderr, or the bare iterable-wrapper with disable=True when show_progress() says no (pipes,
    logs, --quiet). `enabled`: the caller's own switch (e.g. only rank 0 of a torchrun job)."""
    from tqdm import tqdm

    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, disable=not (enabled and show_progress()), file=sys.stderr, **kw)


class _LineLog(io.TextIOBase):
    """A text stream whose complete lines become INFO log records (library code that prints progress)."""

    def __init__(self):
        self._buf = ""

    def writable(self):
        return True

    def write(self, s):
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                log.info(line)
        return len(s)

    def flush(self):
        if self._buf.strip():
            log.info(self._buf)
        self._buf = ""


@contextlib.contextmanager
def stdout_to_log():
    """Inside: whatever library code prints on stdout (stage reports, round lines) goes to the log (stderr) instead,
    so stdout keeps the result alone (used by --json)."""
    sink = _LineLog()
    with contextlib.redirect_stdout(sink):
        try:
            yield
        finally:
            sink.flush()


def speed(ratio: float) -> str:
    """How many times FASTER something is (reference time / its time, or its rate / reference rate), as people read
    it: 17.3 -> "17.3x faster", 0.47 -> "2.1x slower", 1.004 -> "as fast"; 1310 -> "1310x faster"."""
    if ratio is None or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        return "n/a"
    word, r = ("faster", ratio) if ratio >= 1 else ("slower", 1 / ratio)
    s = f"{r:.0f}" if r >= 100 else f"{r:.1f}"
    return "as fast" if s == "1.0" else f"{s}x {word}"
