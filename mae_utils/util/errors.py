"""One exception type for mistakes a user can fix (bad path, bad value, no images), and the seed check.

The command line turns it into a single ``error: ...`` line and exit status 2; library callers
(notebooks, tests) catch it like any ``ValueError``.
"""


class UserError(ValueError):
    """A problem in the user's input, with a message that names the path, file or parameter."""


#: Seeds reach numpy's and scikit-learn's generators, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is an integer in 0 .. :data:`MAX_SEED`, else a :class:`UserError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{name} must be an integer from 0 to {MAX_SEED}; got {seed!r}")
    return seed
