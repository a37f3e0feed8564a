"""The qbench exception hierarchy. Library code raises these; only qbench.cli maps them to exit codes."""

__all__ = ["QBenchError", "ConfigError", "RegistryError", "StoreError", "SchemaVersionError", "InfraError",
           "NotApplicable", "WeightsNotFound", "one_line", "WeightsHashMismatch"]


class QBenchError(Exception):
    """Base of every error qbench raises on purpose."""


class ConfigError(QBenchError):
    """Bad user input: a suite file, a threshold, a command-line argument (exit 2)."""


class RegistryError(ConfigError):
    """An unknown model, mode or engine name, or a duplicate registration (exit 2)."""


class StoreError(QBenchError):
    """A results file that cannot be read: corrupt, truncated, or of a newer schema (exit 3)."""


class SchemaVersionError(StoreError):
    """A results file written by a newer qbench than this one."""


class InfraError(QBenchError):
    """The harness itself could not work: a worker could not start, a results folder is not writable (exit 3)."""


class NotApplicable(QBenchError):
    """A mode, engine or model cannot do this case. Inside a worker it becomes a `skipped` record, never an exit."""


class WeightsNotFound(ConfigError):
    """Pretrained weights are not in the TORCH_HOME cache and cannot be downloaded here."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, white space folded, at most `limit` characters (for one-line error messages)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class WeightsHashMismatch(ConfigError):
    """Downloaded weights (or a data file) whose sha256 does not match the one published for them; nothing is kept."""
