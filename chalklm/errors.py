"""The errors chalklm raises on bad input.

Every library error is a `ChalkError`; the command line prints its message as one line
and exits with status 2. The message says what was wrong, where, and how to fix it.
"""


class ChalkError(Exception):
    """Base of every error caused by the user's input (not by a bug in chalklm)."""


class ConfigError(ChalkError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


class DataError(ChalkError):
    """A dataset cannot be found, downloaded, or read as text."""


class TokenizerError(ChalkError, ValueError):
    """Text or ids the tokenizer cannot handle, or a malformed tokenizer file."""


class UnknownCharacterError(TokenizerError):
    """Text holding a character the (character-level) vocabulary lacks. `problem` says which
    and where; the message adds how a Python caller can replace it, and a command adds its
    own advice to `problem` instead."""

    def __init__(self, problem: str, hint: str):
        super().__init__(f"{problem}; {hint}")
        self.problem = problem


class CheckpointError(ChalkError):
    """A checkpoint folder is missing, incomplete, or corrupt, or cannot be written."""


class WriteError(ChalkError, OSError):
    """A file the system refused to write (disk full, no permission, a file in the way).
    Still an OSError, for callers that catch those."""


class ShapeError(ChalkError, ValueError):
    """Weights or inputs whose names or shapes do not match the model."""
