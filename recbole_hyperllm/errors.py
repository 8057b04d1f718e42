"""Errors a run reports in one line (the run script exits 2 with ``error: <message>``)."""
from recbole_hyperllm.atomic import AtomicFileError


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or non-finite embeddings."""


class ConfigError(ValueError):
    """A config key holds a value the model cannot use; the message names the key and the allowed values."""


def choice(config, key, allowed, default):
    """``config[key]`` (``default`` when unset), checked against ``allowed``; ConfigError names the key."""
    value = config[key]
    value = default if value is None else value
    if value not in allowed:
        raise ConfigError(f"config key '{key}' is {value!r}; use one of {tuple(allowed)}")
    return value


def positive(config, key, *, allow_zero=False, default=None):
    """``float(config[key])`` (``default`` when unset), checked to be a number > 0 (or >= 0; NaN never);
    ConfigError names the key."""
    value = config[key]
    value = default if value is None else value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"config key '{key}' is {value!r}; it must be a number {'>=' if allow_zero else '>'} 0")
    return float(value)


def integer(config, key, minimum, default=None):
    """``config[key]`` (``default`` when unset), checked to be an integer >= ``minimum``; ConfigError names the key."""
    value = config[key]
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be an integer >= {minimum}")
    return value


class CheckpointError(ValueError):
    """A checkpoint cannot be read or written, or is not the kind expected; the message names the file."""



# What the run scripts print as ``error: <message>`` and exit 2 for (atomic.py imports nothing of this module).
ONE_LINE_ERRORS = (AtomicFileError, CheckpointError, ConfigError, DivergenceError)
