"""Typed errors for user mistakes.

Every error a user can fix raises a :class:`MinidiscError` subclass whose message says
what to change. The CLI prints the message without a traceback and exits non-zero.
"""

from __future__ import annotations


class MinidiscError(Exception):
    """Base class of every error caused by input the user can change."""


class ConfigError(MinidiscError):
    """An option, config file or argument combination is invalid."""


class DataError(MinidiscError):
    """A data file is missing, malformed, or holds an unknown label."""


class ModelError(MinidiscError):
    """A model cannot be loaded or is not of a supported architecture."""


class RunExistsError(MinidiscError):
    """A finished run would be overwritten without ``--overwrite``."""


class DivergenceError(MinidiscError):
    """Training produced a non-finite loss, gradient norm or weight (e.g. a learning rate
    far too high); the stage is stopped and nothing of it is kept."""


class DiskFullError(MinidiscError):
    """The disk filled up while minidisc wrote an output (the unfinished output is removed)."""
