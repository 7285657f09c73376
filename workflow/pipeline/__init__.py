"""The workflow's glue: the one place that knows both libraries and the pipeline's files.

The libraries compute and return objects (datasets, tables, figures); the functions here
read the pipeline's inputs, call the libraries and write the outputs, each file whole or not
at all (`pipeline.files`). Neither library imports this package; the Snakemake scripts in
workflow/scripts call one function each through `pipeline.runner.run_stage`, the rule files
import the plan-time checks, and the tests import it without Snakemake (tests/conftest.py
puts workflow/ on sys.path, workflow/rules/common.smk does so for the rules and their jobs).

Modules: runner (logging, one-line errors), files (atomic writes, the one figure saver),
dendrite (stages 1-2: plan, simulate, fit, figures), plan_checks (the plan against the
config and the machine), training (priors, training runs), theory (the theory experiments),
summary (per-dataset tables and figures), fields and report (the HTML report), paper
(published numbers and their protocols).
"""
