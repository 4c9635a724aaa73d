"""What every `python -m train.<stage>` command shares: the exit codes and argument types.

Exit codes: 0 done (or the gate passed), 1 refused by the gate, 2 error. An error the user can act
on (a bad config, data file or model directory) is one line on stderr that names the file and
field, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_stage(stage: Callable[[], object], errors: tuple[type[BaseException], ...]) -> int:
    """Runs `stage`: EXIT_ERROR with one line for `errors`; else the exit code it returns (an int), else EXIT_OK."""
    try:
        result = stage()
    except errors as exc:
        # str() of a KeyError is only the key; the repr says what went wrong.
        message = str(exc) if isinstance(exc, (ValueError, OSError, RuntimeError)) else repr(exc)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # a bug: its traceback, and still an error (1 would read as a gate refusal)
        traceback.print_exc()
        return EXIT_ERROR
    return result if type(result) is int else EXIT_OK
