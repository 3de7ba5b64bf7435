"""The one exception type for user mistakes.

The CLI turns an ``EdgeSignsError`` into a one-line message and exit status 1;
anything else is a bug and keeps its traceback.
"""


class EdgeSignsError(Exception):
    """A problem the user can fix: bad input file, missing data, no camera."""
