"""The one base class of every error a user can fix, and how the command line describes the OS errors
a user causes.

:class:`UserError` sits below every other package (it imports nothing of prunelab), so each layer can
derive its own errors from it: bad specs, patterns and steps, missing or damaged runs and data files,
diverged training, an unavailable device. The command line prints such an error as one line
(``prunelab: error: ...``) and exits with :data:`EXIT_USER_ERROR`; anything else that escapes is a bug
and keeps its traceback. The existing classes keep their historical bases too (``ValueError``,
``LookupError``, ``RuntimeError``), so code that catches those still works.
"""

from __future__ import annotations

import errno

__all__ = ["UserError", "EXIT_USER_ERROR", "EXIT_INTERRUPTED", "INTERRUPTED_MESSAGE", "is_user_error", "describe_error"]

#: exit code of a command stopped by bad input or another condition the user can fix
EXIT_USER_ERROR = 2
#: exit code of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
INTERRUPTED_MESSAGE = "interrupted; re-run the same command to resume"


class UserError(Exception):
    """An error the user can fix. Its message is one line that says what is wrong, where, and how to
    fix it; it is shown as it is, without a traceback."""


#: errno values of OS errors that come from the user's environment (permissions, a full or read-only
#: disk, a path that does not exist or is not a directory), with what to do about each
_OS_ADVICE: dict[int, str] = {
    errno.EACCES: "make it writable (or readable) for you, or choose another place (the run store: --home DIR "
    "or $PRUNELAB_HOME)",
    errno.EPERM: "make it writable for you, or choose another place (the run store: --home DIR or $PRUNELAB_HOME)",
    errno.EROFS: "the file system is read-only: choose a writable place (the run store: --home DIR or $PRUNELAB_HOME)",
    errno.ENOSPC: "free some space (or choose another place with --home DIR) and re-run the same command: it "
    "resumes from the last complete checkpoint",
    errno.EDQUOT: "your disk quota is used up: free some space and re-run the same command (it resumes)",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path (the run store: --home DIR or "
    "$PRUNELAB_HOME)",
    errno.EISDIR: "it is a directory: give a file",
    errno.ENAMETOOLONG: "use a shorter path",
}


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one the user can fix: a :class:`UserError`, or an OS error of permissions,
    space or paths (not, say, a broken pipe, which the command line handles on its own)."""
    if isinstance(error, UserError):
        return True
    return isinstance(error, OSError) and error.errno in _OS_ADVICE


def describe_error(error: BaseException) -> str:
    """``error`` as the one line the command line prints after ``prunelab: error:``."""
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.errno in _OS_ADVICE:
        what = error.strerror or errno.errorcode.get(error.errno or 0, "OS error")
        where = error.filename if error.filename is not None else ""
        if error.filename2 is not None:
            where = f"{where} -> {error.filename2}"
        advice = _OS_ADVICE[error.errno]
        return f"{what.lower()}: {where}; {advice}" if where else f"{what.lower()}; {advice}"
    text = " ".join(str(error).split())
    return text or type(error).__name__
