# Read first, before Snakemake merges the config files (the Snakefile calls this before its
# `configfile:`): a key given twice, a key that is not text, an alias bomb and a file that is
# not a mapping are refused in one line that names the file and the line
# (dendrite_sim.config_file). The merged config's values are checked in common.smk.
from dendrite_sim.config_file import ConfigFileError, read_config_file
from snakemake.exceptions import WorkflowError


def check_config_files(paths):
    for path in paths:
        try:
            read_config_file(path)
        except ConfigFileError as err:
            raise WorkflowError(str(err)) from None
