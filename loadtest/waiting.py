"""Waiting for a condition, bounded: the one Python copy for loadtest/'s
scripts (the shell scripts' is `wait.sh`). Never a fixed sleep standing in
for a condition: a slower or busier machine only waits longer."""
import sys
import time
from pathlib import Path


def wait_until(seconds, what, check, proc=None, logfile=None):
    """Polls `check` every 0.2 s until it returns a truthy value, which it
    returns. A check that raises OSError (connection refused, a URL error)
    or ValueError (a half-written answer) counts as not yet. Exits the
    script naming `what` at the deadline, or at once if `proc` (the process
    that should make the condition true) has exited; `logfile`'s tail is
    printed with the reason. `what` may be a function, called then: a
    description of the state when the wait failed, not when it began."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError):
            pass
        if proc is not None and proc.poll() is not None:
            what = what() if callable(what) else what
            sys.exit(f"{what}: the process exited ({proc.returncode})\n{tail(logfile)}")
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            sys.exit(f"{what}: not within {seconds:.0f} s\n{tail(logfile)}")
        time.sleep(0.2)


def tail(logfile, chars=3000):
    """The end of `logfile` (empty without one)."""
    if not logfile:
        return ""
    try:
        return Path(logfile).read_text(errors="replace")[-chars:]
    except OSError as e:
        return f"({logfile}: {e})"
