"""The one exception type for bad user input (config, SWC file, site, protocol)."""


class InputError(ValueError):
    """Bad input named by its source (file, line or config key) with what to do."""
