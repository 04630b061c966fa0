"""One exception type for mistakes a user can fix (bad path, bad value, no images).

The command line turns it into a single ``error: ...`` line and exit status 2; library callers
(notebooks, tests) catch it like any ``ValueError``.
"""


class UserError(ValueError):
    """A problem in the user's input, with a message that names the path, file or parameter."""
