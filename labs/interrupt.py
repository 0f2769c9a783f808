"""Run a lab's ``main`` so that SIGTERM and SIGHUP clean up as Ctrl-C does.

Python's default action for SIGTERM ends the process at once: no ``finally`` block, no
context manager's exit, no ``atexit`` hook runs, so a lab stopped by a CI timeout, ``kill``
or a closed terminal would leave its servers, worker processes and network namespaces behind.
:func:`run_main` turns either signal into :class:`KeyboardInterrupt` for the duration of the
call, which unwinds through every cleanup the lab has, then puts the previous handlers back.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _unwind(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def run_main(main: Callable[..., Any], *args: Any) -> int:
    """Call ``main(*args)`` with SIGTERM and SIGHUP unwinding; return an exit status.

    An ``int`` that ``main`` returns is the status (anything else is 0); a signal gives
    128 + 15 as a shell reports it, with one line on standard error.
    """
    previous = {sig: signal.signal(sig, _unwind) for sig in SIGNALS}
    try:
        result = main(*args)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}); cleaned up", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
