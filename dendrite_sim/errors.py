"""The errors dendrite_sim reports to the user as one line, without a traceback.

The stage runner and each command line catch `DendriteError` and nothing narrower; any
other exception is a bug and keeps its traceback.
"""


class DendriteError(Exception):
    """The user's input or data are at fault, not the code."""


class InputError(DendriteError, ValueError):
    """Bad input named by its source (file, line or config key) with what to do."""


class NotFiniteError(DendriteError, ValueError):
    """A stage met NaN or infinite values in its inputs or outputs; the message names the
    cell, the trials and the likely cause. The stage writes nothing."""
