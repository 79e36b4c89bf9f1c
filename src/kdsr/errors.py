"""Exceptions for user mistakes: the CLI prints them as one line and exits non-zero, without a traceback."""


class KDSRError(Exception):
    """Base class of every error caused by bad input (files, names, options)."""


class CheckpointError(KDSRError):
    """A model file or name that cannot be loaded."""


class ImageError(KDSRError):
    """An image that cannot be read, written or processed."""


def shortened(items: list[str], limit: int, sep: str = ", ") -> str:
    """The first ``limit`` items joined, and how many more there are: one-line error messages stay one line."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


class UntrainedModelWarning(UserWarning):
    """A preset name was loaded as a randomly initialised network."""
