"""The package's exception types: bad user input, and data that are not finite."""


class InputError(ValueError):
    """Bad input named by its source (file, line or config key) with what to do."""


class NotFiniteError(ValueError):
    """A stage met NaN or infinite values in its inputs or outputs; the message names the
    cell, the trials and the likely cause. The stage writes nothing."""
