"""Exceptions for user mistakes: the CLI prints them as one line and exits non-zero, without a traceback."""


class KDSRError(Exception):
    """Base class of every error caused by bad input (files, names, options)."""


class CheckpointError(KDSRError):
    """A model file or name that cannot be loaded."""


class ImageError(KDSRError):
    """An image that cannot be read, written or processed."""


class UntrainedModelWarning(UserWarning):
    """A preset name was loaded as a randomly initialised network."""
