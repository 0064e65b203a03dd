"""The one exception type data loading raises for problems with files on disk."""

from __future__ import annotations

from prunelab.errors import UserError

__all__ = ["DataError"]


class DataError(UserError, ValueError):
    """A data set that cannot be read as found: missing, truncated or corrupt files, a failed
    download or checksum. The message names the file (or directory) and says how to fix it.

    A ``ValueError`` subclass so callers that already treat bad input as ``ValueError`` keep working.
    """
