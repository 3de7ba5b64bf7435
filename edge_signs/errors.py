"""The one exception type for user mistakes.

The CLI turns an ``EdgeSignsError`` into a one-line message and its ``exit_code``
(1 unless a subclass says otherwise); anything else is a bug and keeps its traceback.
"""


class EdgeSignsError(Exception):
    """A problem the user can fix: bad input file, missing data, no camera."""

    exit_code = 1
