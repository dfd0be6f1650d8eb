"""Every case of tests/bad_input_cases.py, in-process (slt_deploy.cli.main with captured output and a time limit):
exit 2, one `error: ... (fix: ...)` line, no traceback, nothing changed outside --out. The same table runs as real
subprocesses with `python tests/bad_input_cases.py` (the before/after figures of issue 20)."""
import contextlib
import io
import os
import signal
import sys
import traceback

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bad_input_cases as B

TIME_LIMIT = 30  # seconds per case; a case still running is a hang


class _Timeout(BaseException):
    pass


def run_in_process(argv):
    """-> (exit code or None, stderr, timed_out). Any uncaught exception is rendered as a traceback on stderr."""
    from slt_deploy.cli import main

    out, err = io.StringIO(), io.StringIO()

    def alarm(*_):
        raise _Timeout()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT)
    code, timed_out = 0, False
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except _Timeout:
        code, timed_out = None, True
    except BaseException:  # noqa: BLE001 - this is what the test looks for
        err.write(traceback.format_exc())
        code = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, err.getvalue(), timed_out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return B.make_base(str(tmp_path_factory.mktemp("bad-input") / "base"))


def _params():
    for c in B.CASES:
        marks = []
        if c.xfail:
            marks.append(pytest.mark.xfail(reason=c.xfail, strict=False, run=c.run_in_process))
        elif not c.run_in_process:
            marks.append(pytest.mark.skip(reason="would hang or allocate in-process; measured as a subprocess"))
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("c", list(_params()))
def test_bad_input(c, base, tmp_path, monkeypatch):
    ws = str(tmp_path / "w")
    B.make_workspace(base, ws, c)
    before = B.snapshot(ws)
    monkeypatch.chdir(ws)
    code, err, timed_out = run_in_process(c.argv)
    dmg = B.damage(before, B.snapshot(ws), c.out)
    got = B.classify(code, err, dmg, timed_out, c.expect)
    assert got == c.expect, f"{c.id}: {got} (exit {code}); damage {dmg[:3]}; stderr:\n{err[-1500:]}"
