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


def positive(config, key, *, allow_zero=False):
    """``float(config[key])``, checked to be > 0 (or >= 0); ConfigError names the key."""
    value = config[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' is {value!r}; it must be a number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config key '{key}' is {value}; it must be {'>= 0' if allow_zero else '> 0'}")
    return value


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
