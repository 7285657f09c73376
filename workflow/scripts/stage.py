"""Run one library step from a Snakemake script: log to stderr and the rule's log,
and turn bad input into a one-line error instead of a traceback."""

import logging
import sys
from collections.abc import Callable

from dendrite_sim.errors import InputError


def run_stage(step: Callable, log_path: str | None = None, **kwargs) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    try:
        step(**kwargs)
    except InputError as err:
        logging.getLogger(step.__module__).error("error: %s", err)
        sys.exit(1)
