"""How the workflow is run: the profiles under profiles/ (the default one that a plain
`snakemake` loads, the one-GPU one), the conda environments of the rules, and the
.gitignore the workflow puts in its results folder."""

import ast
import copy
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_command
from fixtures import tiny_workflow_config, write_fashion_mnist
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

DEFAULT_PROFILE = f"Using workflow specific profile {ROOT / 'profiles' / 'default'} "
RUN = "train/fashion_mnist/resnet20/none/seed0"


def run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(folder, n_train=512, n_test=96, seed=2, learnable=True)
    return folder


def training_config(default_config: dict, results: Path, fmnist: Path, **recipe) -> dict:
    """The tiny workflow's config with one process per training job."""
    config = tiny_workflow_config(default_config, results, fmnist)
    config["train"]["processes"] = 1
    config["recipes"]["fmnist_short"].update(recipe)
    return config


# ---------------------------------------------------------------- profiles/default
@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_a_plain_snakemake_reruns_what_a_kill_cut_off(tmp_path, default_config, fmnist, how):
    """Snakemake finds profiles/default beside the Snakefile, from any working folder, and
    its rerun-incomplete makes a plain rerun finish a run that Ctrl-C (SIGINT to the
    process group, as a terminal sends it) or SIGKILL (power loss, OOM killer) cut off."""
    results = tmp_path / "results"
    config = training_config(default_config, results, fmnist, epochs=4)
    target = str(results / RUN / "metrics.json")
    plain = snakemake_command(tmp_path, config) + [target]  # -s ROOT/Snakefile, --cores 2
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(
        plain, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    # metrics.csv, written just after each epoch's checkpoint: an output of the job that
    # exists, which is what Snakemake's incomplete marker is checked against
    deadline = time.time() + 300
    while not (results / RUN / "metrics.csv").exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "no epoch finished within 300 s"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    first.wait(timeout=120)
    log.close()
    assert DEFAULT_PROFILE in (tmp_path / "first.log").read_text()
    assert "Provided cores: 2" in (tmp_path / "first.log").read_text()  # --cores beats cores: all
    assert not (results / RUN / "metrics.json").exists()

    bare = run(plain + ["--workflow-profile", "none", "-n"], tmp_path)
    incomplete = bare.returncode != 0 and "IncompleteFilesException" in bare.stdout
    if how == "sigkill":  # nothing could clean up: the output is marked incomplete
        assert incomplete, bare.stdout[-3000:]
    else:  # Snakemake's own Ctrl-C handling may get to unmark it first: then train is planned
        assert incomplete or re.search(r"^train\s+1$", bare.stdout, re.M), bare.stdout[-3000:]
    if how == "sigkill":  # Snakemake's own lock stays too: --unlock, as the README says
        locked = run(plain, tmp_path)
        assert locked.returncode != 0 and "LockException" in locked.stdout
        assert run(plain + ["--unlock"], tmp_path).returncode == 0

    rerun = run(plain, tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-5000:]
    assert DEFAULT_PROFILE in rerun.stdout
    assert (results / RUN / "metrics.json").is_file()
    train_log = (results / "logs/train/fashion_mnist/resnet20/none/seed0.log").read_text()
    assert re.search(r"resuming .*checkpoint\.pt from epoch [123]\b", train_log), train_log
    if how == "sigkill":  # the killed training left its output folder's lock behind
        assert "taking over the lock of a run that ended without releasing it" in train_log
    assert not (results / RUN / "train.lock").exists()


# ids that are not "gpu": conftest skips tests marked gpu on machines without CUDA
@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "gpu", "slurm"], ids=["default", "one-gpu", "slurm"])
def test_each_profile_is_found_by_name_and_plans_the_workflow(tmp_path, default_config, name):
    command = snakemake_command(tmp_path, default_config)[:-2]  # without --cores 2
    if name != "default":
        command += ["--workflow-profile", name]  # profiles/<name> beside the Snakefile
    if name == "slurm":
        command += ["--slurm-no-account"]
    result = run(command + ["-n"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Using workflow specific profile {ROOT / 'profiles' / name} " in result.stdout
    assert "Job stats:" in result.stdout


def concurrency(output: str, rule: str) -> int:
    """The most jobs of `rule` that ran at once, from Snakemake's log of a local run."""
    running, most, starting = 0, 0, False
    for line in output.splitlines():
        if re.fullmatch(rf"(local)?rule {rule}:", line):
            starting = True
        elif starting and line.strip().startswith("jobid:"):
            running, starting = running + 1, False
            most = max(most, running)
        elif re.match(rf"Finished jobid: \d+ \(Rule: {rule}\)", line):
            running -= 1
    return most


@pytest.mark.slow
def test_gpu_profile_runs_one_training_job_at_a_time(tmp_path, default_config, fmnist):
    """Two training jobs with one thread each on two cores: run side by side by default,
    one after the other under profiles/gpu (global resource gpu=1, each job needs 1)."""
    runs = ["resnet20/none/seed0", "dit_resnet20/zero/seed0"]
    most = {}
    for name, profile in (("default", []), ("gpu", ["--workflow-profile", "gpu"])):
        workdir = tmp_path / name
        workdir.mkdir()
        results = workdir / "results"
        config = training_config(default_config, results, fmnist, epochs=1)
        targets = [str(results / f"train/fashion_mnist/{r}/metrics.json") for r in runs]
        command = snakemake_command(workdir, config) + profile + targets
        result = run(command, workdir)
        assert result.returncode == 0, result.stdout[-3000:]
        most[name] = concurrency(result.stdout, "train")
        if profile:
            assert re.search(r"Provided resources: gpu=\D*1\b", result.stdout), result.stdout
    assert most == {"default": 2, "gpu": 1}


# ---------------------------------------------------------------- conda environments
ENVS = ROOT / "workflow" / "envs"
IMPORT_PACKAGES = {  # imported module -> the conda-forge package(s) it needs
    "yaml": {"pyyaml"},
    "torch": {"pytorch"},
    "PIL": {"pillow"},
    "matplotlib": {"matplotlib-base"},
    "xarray": {"xarray", "h5netcdf"},  # the project writes and reads NetCDF with h5netcdf
    "brian2": {"brian2", "cxx-compiler", "make"},  # C++ standalone mode builds each run
    "triton": set(),  # part of conda-forge's CUDA build of pytorch; used on CUDA only
}
PIP_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def rules_with_directives() -> dict[str, dict[str, str]]:
    """rule -> {directive: value} for the one-line conda: and script: of every rule file."""
    rules = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", path.read_text(), flags=re.M)[1:]:
            name = re.match(r"rule (\w+):", block)[1]
            found = re.findall(r'^    (conda|script):\n        "([^"]+)"', block, flags=re.M)
            rules[name] = {key: str((path.parent / value).resolve()) for key, value in found}
    return rules


def env_packages(path: str | Path) -> dict[str, SpecifierSet]:
    """conda package -> its version spec, from an environment file."""
    packages = {}
    for entry in yaml.safe_load(Path(path).read_text())["dependencies"]:
        assert isinstance(entry, str), f"{path}: only conda packages, no pip section"
        name, _, spec = entry.partition(" ")
        packages[name] = SpecifierSet(spec.replace(" ", ""))
    return packages


# The project's packages and the folder each is imported from.
PROJECT_PACKAGES = {"ann": ROOT, "dendrite_sim": ROOT, "pipeline": ROOT / "workflow"}


def imported_packages(script: Path) -> set[str]:
    """Top-level third-party modules a workflow script can import, through the project's
    modules it imports (every import in them, lazy ones inside functions too)."""
    seen, found, todo = set(), set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "workflow":
            relative = relative.relative_to("workflow")
        package = ".".join(relative.with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                names = [f"{base}.{node.module}" if node.module else base]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in PROJECT_PACKAGES:
                    # the module, and every package above it (Python runs their __init__ first)
                    for depth in range(1, len(parts) + 1):
                        module = PROJECT_PACKAGES[parts[0]].joinpath(*parts[:depth])
                        for candidate in (module / "__init__.py", module.with_suffix(".py")):
                            if candidate.is_file():
                                todo.append(candidate)
                elif parts[0] not in sys.stdlib_module_names:
                    found.add(parts[0])
    return found


@pytest.mark.slow
def test_every_rule_has_a_conda_environment_that_covers_its_imports():
    rules = rules_with_directives()
    listing = [sys.executable, "-m", "snakemake", "--list-rules"]
    listed = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert set(rules) == set(listed) - {"all"}, listed  # the regex above found every rule
    for name, directives in rules.items():
        assert "conda" in directives, f"rule {name} has no conda: directive"
        env = Path(directives["conda"])
        assert env.parent == ENVS and env.is_file(), f"rule {name}: {env}"
        assert env.with_name(env.stem + ".post-deploy.sh").is_file(), env
        packages = env_packages(env)
        for module in imported_packages(Path(directives["script"])):
            needed = IMPORT_PACKAGES.get(module, {module})
            assert needed <= set(packages), f"rule {name} imports {module}: {env.name} lacks it"
    assert {Path(d["conda"]).stem for d in rules.values()} == {"dendrite", "ann"}
    lint = run([sys.executable, "-m", "snakemake", "--lint"], ROOT)
    assert "Lints for" not in lint.stdout, lint.stdout  # the whole workflow lints clean
    assert "Specify a conda environment" not in lint.stdout


def test_conda_environments_follow_pyproject_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        Requirement(r).name.lower(): Requirement(r).specifier for r in project["dependencies"]
    }
    for env in sorted(ENVS.glob("*.yaml")):
        packages = env_packages(env)
        shared = 0
        for name, spec in packages.items():
            pip_name = PIP_NAMES.get(name, name)
            if pip_name in pinned:
                assert spec == pinned[pip_name], f"{env.name}: {name} {spec} != {pinned[pip_name]}"
                shared += 1
        assert shared >= 8, env.name
        assert SpecifierSet(">=3.11") == packages["python"]


FAKE_CONDA = r"""#!/usr/bin/env bash
# A stand-in for conda: answers what Snakemake asks, and creates an "environment" whose
# python records its arguments and hands them to the test's pip with --dry-run.
here="$(cd "$(dirname "$0")/.." && pwd)"
case "$1 $2" in
  "info --json") echo "{\"conda_prefix\": \"$here\", \"platform\": \"linux-64\"}" ;;
  "--version "*) echo "conda 25.1.1" ;;
  "config --get") echo '{"get": {"channel_priority": "strict"}}' ;;
  "clean -y") ;;
  "env create")
    for arg in "$@"; do
      case "$previous" in --file) file="${arg//\"/}" ;; --prefix) prefix="${arg//\"/}" ;; esac
      previous="$arg"
    done
    mkdir -p "$prefix/bin"
    cp "$file" "$prefix/environment.yaml"
    printf '#!/usr/bin/env bash\necho "$*" >> "%s/python.log"\nexec %s "$@" --dry-run >> "%s/pip.log" 2>&1\n' \
      "$prefix" "$REAL_PYTHON" "$prefix" > "$prefix/bin/python"
    chmod +x "$prefix/bin/python" ;;
  *) echo "fake conda: unexpected $*" >&2; exit 1 ;;
esac
"""


@pytest.mark.slow
def test_conda_deployment_installs_the_project_from_the_checkout(tmp_path, default_config):
    """`--sdm conda --conda-create-envs-only` through a stand-in for conda: each environment
    file of workflow/envs is created, and its post-deploy script installs the project from
    the checkout (with pip --dry-run here), wherever the working folder is."""
    (tmp_path / "conda/bin").mkdir(parents=True)
    (tmp_path / "conda/bin/conda").write_text(FAKE_CONDA)
    (tmp_path / "conda/bin/conda").chmod(0o755)
    (tmp_path / "conda/bin/activate").write_text('export PATH="$1/bin:$PATH"\n')
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    config = copy.deepcopy(default_config) | {"results_dir": str(workdir / "results")}
    command = snakemake_command(workdir, config) + ["--sdm", "conda", "--conda-create-envs-only"]
    env = os.environ | {
        "PATH": f"{tmp_path / 'conda/bin'}:{os.environ['PATH']}",
        "REAL_PYTHON": sys.executable,
    }
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    created = sorted(p for p in (workdir / ".snakemake/conda").iterdir() if p.is_dir())
    contents = sorted((p / "environment.yaml").read_text() for p in created)
    assert contents == sorted(p.read_text() for p in ENVS.glob("*.yaml"))
    for prefix in created:
        calls = (prefix / "python.log").read_text()
        assert calls == f"-m pip install --no-deps --no-build-isolation --editable {ROOT}\n"
        assert "Would install dendritic-bilinear" in (prefix / "pip.log").read_text()


# ---------------------------------------------------------------- the results folder
@pytest.mark.slow
@pytest.mark.parametrize("before", ["absent", "workflow outputs", "user files"])
def test_the_results_folder_is_kept_out_of_git(tmp_path, default_config, before):
    """results_dir anywhere gets a .gitignore of `*` when the workflow owns the folder;
    a folder holding other files is left alone."""
    results = tmp_path / "results"
    if before == "workflow outputs":
        (results / "logs").mkdir(parents=True)
    elif before == "user files":
        results.mkdir()
        (results / "notes.txt").write_text("mine\n")
    config = copy.deepcopy(default_config) | {"results_dir": str(results)}
    target = str(results / "dendrite/pyramidal/trials.nc")
    result = run(snakemake_command(tmp_path, config) + [target], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (results / "dendrite/pyramidal/trials.nc").is_file()
    if before == "user files":
        assert not (results / ".gitignore").exists()
        return
    assert (results / ".gitignore").read_text().splitlines()[-1] == "*"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "config.yaml" in status and "results/" not in status, status
