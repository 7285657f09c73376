# Read first, before Snakemake merges the config files (the Snakefile calls this before its
# `configfile:`): a key given twice, a key that is not text, an alias bomb and a file that is
# not a mapping are refused in one line that names the file and the line
# (dendrite_sim.config_file). The merged config's values are checked in common.smk.
from pathlib import Path

from dendrite_sim.config_file import ConfigFileError, read_config_file
from snakemake.exceptions import WorkflowError


def check_config_files():
    """config.yaml beside the Snakefile and every --configfile, read strictly."""
    for path in [Path(workflow.basedir) / "config.yaml", *workflow.config_settings.configfiles]:
        try:
            read_config_file(path)
        except ConfigFileError as err:
            raise WorkflowError(str(err)) from None
