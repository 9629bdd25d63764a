"""`python -m grutext` and the `grutext` command.

SIGTERM is turned into an exception before anything else is imported, so a signal at any moment of a command
(even while torch is being imported) ends it the documented way: one line and exit 143 (130 for Ctrl-C).
"""

import os
import signal

from grutext.errors import interrupt_code, raise_terminated


def main() -> None:
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        from grutext import cli
    except KeyboardInterrupt as exc:
        os._exit(interrupt_code(exc))
    cli.main()


if __name__ == "__main__":
    main()
