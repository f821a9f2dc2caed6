"""Errors a user can fix. Caught only in cli.py, printed as one line, exit code 2."""

# The command line's exit codes: ok, a gate rule failed, bad input or configuration, a bug.
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


class HarnessError(Exception):
    """Base of every error that means: the input or configuration is wrong."""


class ConfigError(HarnessError):
    """A task YAML, recipe or command-line value is wrong."""


class NotFoundError(HarnessError):
    """A named thing (task, metric, file) does not exist."""


class DataError(HarnessError):
    """A data file or its rows are unusable."""


class ModelError(HarnessError):
    """A model, tokenizer or adapter cannot be loaded or does not fit."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of a library's error (at most 300 characters), or its type:
    what goes into a one-line message.
    """
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(err).__name__
