"""One exception type for mistakes a user can fix
(bad path, bad value, no images), and the seed check.

The command line turns it into a single ``error: ...`` line and exit status 2; library callers
(notebooks, tests) catch it like any ``ValueError``.
"""

import contextlib
import signal
import threading


class UserError(ValueError):
    """A problem in the user's input, with a message that names the path, file or parameter."""


#: Seeds reach numpy's and scikit-learn's generators, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is an integer in 0 .. :data:`MAX_SEED`,
    else a :class:`UserError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{name} must be an integer from 0 to {MAX_SEED}; got {seed!r}")
    return seed


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``kill``'s stop) turned into what Ctrl-C raises, so both end a run
    the same way: the epoch in flight abandoned, checkpoints kept, the run folder's lock released.
    The command line installs it for every command (:func:`mae_utils.app.cli.main`)."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(f"stopped ({signal.Signals(signum).name})")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated`
    (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

