import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

# Without a GPU the Triton kernels run under Triton's interpreter, on CPU tensors. It is
# chosen when a kernel is first defined, so this must come before anything imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# Fixtures that run the workflow, train or simulate a whole cell: a test that uses one is
# slow (make test-fast leaves it out) without saying so itself.
SLOW_FIXTURES = {
    "tiny_workflow",  # conftest: the whole workflow, shrunk
    "tiny_run",  # test_workflow
    "report_views",  # test_workflow: the report in Chromium
    "fmnist",  # test_deployment: workflow runs
    "default_cell_kappa",  # test_kappa: the default cell simulated and fitted
    "small_cell_files",  # conftest: the built-in cell, shrunk, simulated and fitted
    "small_cell",  # test_kappa: its psp and kappa
    "small_files",  # test_cf: its files, for the CF checker
    "psp",  # test_simulation: a small cell simulated in two processes
    "tiny_result",  # test_fewshot: the few-shot experiment, shrunk
    "realistic_run",  # test_swc_cells: a reconstruction simulated and fitted
}


# Fixtures worth computing once: under pytest-xdist (make test runs two workers) every test
# that uses one goes to the same worker, the first named taking precedence. The SLURM run
# and the tiny workflow go first, to different workers (make test keeps this order:
# --no-loadscope-reorder): they are the longest.
SHARED_FIXTURES = (
    "slurm_run",  # test_slurm
    "tiny_workflow",  # test_ablation, test_workflow, test_deployment
    "small_cell_files",  # test_cf, test_kappa, test_cell_settings, ...
    "default_cell_kappa",
    "psp",
    "realistic_run",
    "kappas",
    "tiny_result",
)


def shared_fixture(item: pytest.Item) -> str | None:
    used = set(getattr(item, "fixturenames", ()))
    return next((name for name in SHARED_FIXTURES if name in used), None)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        group = shared_fixture(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    first = SHARED_FIXTURES[:2]
    items.sort(key=lambda item: first.index(g) if (g := shared_fixture(item)) in first else 2)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; run it where one is present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


ROOT = Path(__file__).resolve().parents[1]
# The workflow's glue is imported as `pipeline` (workflow/rules/common.smk does the same for
# the rules and their scripts).
sys.path.insert(0, str(ROOT / "workflow"))


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture
def config(default_config) -> dict:
    return copy.deepcopy(default_config)


@pytest.fixture(scope="session")
def small_dendrite(default_config) -> dict:
    """The default dendrite section shrunk to a few sites, strengths and trials (read only)."""
    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["sites"]["n_sites"] = 3
    protocol = dendrite["protocol"]
    protocol["strengths_nS"] = {"E": [1.0, 2.0], "I": [2.0, 4.0]}
    protocol["pairs"]["max_pairs_per_kind"] = 3
    protocol["timing"].update(n_pairs=1, delta_t_ms=[-5.0, 5.0])
    protocol["multi"].update(n_trials=2, n_E=4, n_I=2)
    protocol["trial_ms"] = 60.0
    dendrite["chunks"] = 2
    return dendrite


@pytest.fixture(scope="session")
def small_cell_files(tmp_path_factory, small_dendrite) -> tuple[Path, dict]:
    """small_dendrite with timing pairs at delta_t = 0 and every pair, planned, simulated and
    fitted on the built-in cell: the folder of trials.nc, psp.nc, kappa.nc and the kappa
    section used (test_kappa: the read-out; test_cf: the CF checker)."""
    from pipeline import dendrite as stages

    dendrite = copy.deepcopy(small_dendrite)
    dendrite["protocol"]["timing"].update(n_pairs=2, delta_t_ms=[-5.0, 0.0, 5.0])
    dendrite["protocol"]["pairs"]["max_pairs_per_kind"] = 100  # every pair: the timing ones too
    kappa = {"window_ms": [10.0, 50.0], "response_ms": 20.0, "readout_ms": 7.0}
    out = tmp_path_factory.mktemp("small_cell")
    stages.plan("pyramidal", dendrite, out / "trials.nc")
    stages.simulate(out / "trials.nc", "pyramidal", dendrite, out / "psp.nc", processes=2)
    stages.fit(out / "psp.nc", kappa, out / "kappa.nc")
    return out, kappa


def snakemake_command(workdir: Path, config: dict, profile: Path | None = None) -> list[str]:
    """snakemake on the project's Snakefile with `config` (written to workdir), in `workdir`:
    with profiles/default (Snakemake finds it beside the Snakefile) and two cores, or with
    `profile` as the workflow profile in its place, as the README runs profiles/slurm."""
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["-d", str(workdir), "--configfile", str(config_file)]
    return command + (["--workflow-profile", str(profile)] if profile else ["--cores", "2"])


_FORKS: dict[str, subprocess.Popen] = {}


def _fork_server() -> subprocess.Popen:
    server = _FORKS.get("server")
    if server is None or server.poll() is not None:
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "snakemake_forks.py"), str(ROOT / "workflow")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout.readline().strip() == "ready", (
            "the Snakemake fork server did not start"
        )
        _FORKS["server"] = server
    return server


def snakemake_cli(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`command` (`python -m snakemake ...`) with stdout and stderr together as text. A dry run
    goes to tests/snakemake_forks.py, which skips the imports that take most of its time."""
    prefix = [sys.executable, "-m", "snakemake"]
    if command[:3] != prefix or not {"-n", "--dry-run"} & set(command):
        return subprocess.run(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    server = _fork_server()
    with tempfile.NamedTemporaryFile("r", suffix=".log") as out:
        request = {"argv": command[3:], "cwd": str(cwd), "env": dict(os.environ), "out": out.name}
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        code = int(server.stdout.readline())
        return subprocess.CompletedProcess(command, code, stdout=out.read())


def run_snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake locally; stdout and stderr together as text."""
    return snakemake_cli(snakemake_command(workdir, config) + list(args), ROOT)


def tiny_workflow_folder(workdir: Path, default_config: dict) -> dict:
    """workdir with the fixture Fashion-MNIST written; the tiny workflow's config for it."""
    from fixtures import tiny_workflow_config, write_fashion_mnist

    write_fashion_mnist(workdir / "fmnist", n_train=512, n_test=96, seed=2, learnable=True)
    return tiny_workflow_config(default_config, workdir / "results", workdir / "fmnist")


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory, default_config, worker_id):
    """The whole workflow, shrunk, run locally on a fixture Fashion-MNIST: once per pytest
    run, in a folder the pytest-xdist workers share (the SLURM tests, on the other worker,
    compare their run with it), under a file lock."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    workdir = (base if worker_id == "master" else base.parent) / "tiny_workflow"
    done = workdir / "config.json"
    with FileLock(f"{workdir}.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            config = tiny_workflow_folder(workdir, default_config)
            result = run_snakemake(workdir, config)
            assert result.returncode == 0, result.stdout[-5000:]
            done.write_text(json.dumps(config))
    return workdir, json.loads(done.read_text())


def pytest_sessionfinish(session, exitstatus):
    server = _FORKS.pop("server", None)
    if server is not None:
        server.stdin.close()
        server.wait(timeout=60)
