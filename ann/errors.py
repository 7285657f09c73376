"""The errors ann reports to the user as one line, without a traceback.

Every one of them names the input at fault (config key, file, checkpoint, dataset folder)
and what to do. The stage runner and each command line catch `AnnError` and nothing
narrower; any other exception is a bug and keeps its traceback.
"""


class AnnError(Exception):
    """The user's input or environment is at fault, not the code."""


class ConfigError(AnnError, ValueError):
    """A config file, key or value that does not exist or does not fit."""


class RecipeError(ConfigError):
    """A recipe key or value that does not exist or does not fit."""


class PriorError(ConfigError):
    """A prior or the kappa.nc it reads that cannot initialise the quadratic layers."""


class DatasetError(AnnError):
    """A dataset folder or file that is missing or not in the expected format."""


class LockError(AnnError):
    """Another process holds the run folder."""


class TrainingError(AnnError):
    """Training stopped: a non-finite loss, or a checkpoint that does not fit the run."""
