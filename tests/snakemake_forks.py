"""A process that imports Snakemake and the project's libraries once, then forks a fresh child
for every Snakemake dry run the tests ask for.

A dry run spends about 2 of its 3.5 s importing Snakemake and Brian2; the tests plan the
workflow some sixty times. Each child starts from the state right after those imports (the
server itself never runs Snakemake), so its output and exit code are those of
`python -m snakemake ARGS` in the same folder and environment.

Protocol, one JSON object per line on stdin: {"argv": [...], "cwd": ..., "env": {...},
"out": path}; the server answers each with the child's exit code on a line of stdout.
"""

import atexit
import json
import os
import sys


def _preload(workflow: str) -> None:
    sys.path.insert(0, workflow)
    import brian2  # noqa: F401
    import snakemake.api  # noqa: F401
    import snakemake.cli  # noqa: F401

    import ann.settings  # noqa: F401
    import dendrite_sim.dataset  # noqa: F401
    import pipeline.plan_checks  # noqa: F401


def _child(request: dict) -> None:
    from brian2.utils.logger import clean_up_logging

    atexit.unregister(clean_up_logging)  # Brian2's log file is the server's, deleted by it
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.argv = ["snakemake", *request["argv"]]
    from snakemake.cli import main

    main(request["argv"])  # exits with Snakemake's code
    sys.exit(0)


def serve(workflow: str) -> None:
    _preload(workflow)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
