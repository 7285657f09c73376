"""Run one glue step from a Snakemake script: log to stderr and the rule's log, and turn
the libraries' error bases (`ann.errors.AnnError`, `dendrite_sim.errors.DendriteError`:
bad input, missing data, diverged training) into a one-line message instead of a
traceback. Other exceptions are bugs and keep theirs."""

import logging
import sys
from collections.abc import Callable

OUR_PACKAGES = ("dendrite_sim", "ann", "pipeline")
# The base of each library's user errors. A step can raise one only after importing its
# library, so the runner looks them up among the loaded modules: importing ann here would
# load torch, which the dendrite rules' environment does not have.
USER_ERRORS = {"ann.errors": "AnnError", "dendrite_sim.errors": "DendriteError"}


def user_error_types() -> tuple[type[Exception], ...]:
    """The error bases of the libraries loaded so far."""
    return tuple(
        getattr(sys.modules[module], name)
        for module, name in USER_ERRORS.items()
        if module in sys.modules
    )


def run_stage(step: Callable, log_path: str | None = None, **kwargs) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(logging.INFO)
    try:
        step(**kwargs)
    except Exception as err:
        if not isinstance(err, user_error_types()):
            raise
        logging.getLogger(step.__module__).error("error: %s", err)
        sys.exit(1)
