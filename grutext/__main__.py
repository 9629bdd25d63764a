"""`python -m grutext` and the `grutext` command.

SIGINT and SIGTERM get their handler before anything else is imported, so a signal at any moment of a command
(even while torch or onnxruntime is being imported) ends it the documented way: one line and exit 143 (130 for
Ctrl-C).
"""

import os
import signal
import sys

from grutext.errors import interrupt_code, raise_interrupt, redeliver_swallowed, signal_received, stopped_line


def main() -> None:
    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
    sys.unraisablehook = redeliver_swallowed
    try:
        from grutext import cli
    except KeyboardInterrupt as exc:
        _stop(interrupt_code(exc))
    except Exception:  # an import that a signal broke half-way (see raise_interrupt)
        if signal_received() is None:
            raise
        _stop(interrupt_code())
    cli.main()


def _stop(code: int) -> None:
    os.write(2, stopped_line(code).encode())
    os._exit(code)


if __name__ == "__main__":
    main()
