"""The cluster path on a real scheduler: the tiny workflow through Snakemake's SLURM
executor with the project's profile, on a single-node SLURM started for the test."""

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import ROOT, snakemake_command, tiny_workflow_folder
from slurm_cluster import SlurmCluster, unavailable_reason

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

TRAIN_RUN = "dit_resnet20/bio"  # the one training run, at the end of the longest chain


def profile_for_test_cluster(path: Path) -> Path:
    """profiles/slurm pointed at the test cluster: its one partition, no account,
    no GPUs, two CPU processes (torchrun, gloo) per training job, quick status checks."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"] |= {"slurm_partition": "debug", "mem_mb": 1500}
    profile["default-resources"].pop("slurm_account", None)
    for resources in profile["set-resources"].values():
        resources |= {"mem_mb": min(resources.get("mem_mb", 1500), 3000)}
        resources.pop("slurm_partition", None)
    profile["set-resources"]["train"] |= {"gpu": 0, "tasks": 2, "cpus_per_task": 1, "runtime": 30}
    profile["set-threads"]["train"] = 2
    profile |= {
        "slurm-no-account": True,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "jobs": 4,
    }
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm") / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def snakemake_on_slurm(cluster: SlurmCluster, workdir: Path, config: dict) -> subprocess.Popen:
    profile = profile_for_test_cluster(workdir / "profile")
    return subprocess.Popen(
        snakemake_command(workdir, config, profile),
        cwd=ROOT,
        env=cluster.env,
        stdout=open(workdir / "snakemake.log", "w"),
        stderr=subprocess.STDOUT,
    )


def kill_one_training_job(cluster: SlurmCluster, results: Path, process: subprocess.Popen) -> str:
    """scancel a running training job once it has checkpointed an epoch; return its job id."""
    prefix = "rule_train_wildcards_fashion_mnist_"  # the plugin's comment: rule and wildcards
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        for job_id, comment, state in cluster.squeue():
            if not comment.startswith(prefix) or state != "RUNNING":
                continue
            model, prior, seed = comment.removeprefix(prefix).rsplit("_", 2)
            if (results / f"train/fashion_mnist/{model}/{prior}/seed{seed}/checkpoint.pt").exists():
                cluster.scancel(job_id)
                return job_id
        time.sleep(0.2)
    raise AssertionError("no training job was seen running with a checkpoint")


@pytest.fixture(scope="module")
def slurm_run(cluster, default_config, tmp_path_factory):
    """The tiny workflow through the scheduler, started without waiting for the local run
    it is compared with (the tiny_workflow fixture, on the other pytest worker)."""
    workdir = tmp_path_factory.mktemp("on_slurm")
    config = tiny_workflow_folder(workdir, default_config)
    # The scheduler path needs every kind of job, not every job: one cell (the NMDA cell's jobs
    # are the passive cell's), one training run (the one that needs the cell's prior), no prior
    # ablation (its runs are train jobs like the grid's), no low-data experiment and no sweeps
    # (one-process jobs like the theory's).
    config["train"]["experiments"]["fashion_mnist"].update(models=["dit_resnet20"], priors=["bio"])
    config["dendrite"]["cells"]["pyramidal_nmda"] = None
    config["priors"]["biological"]["bio_nmda"] = None
    config["experiments"]["prior_ablation"]["enabled"] = False
    config["experiments"]["prior_lowdata"]["enabled"] = False
    config["sweeps"].update(nmda_g_ratio=[], E_GABA_mV=[])
    start = time.time()
    process = snakemake_on_slurm(cluster, workdir, config)
    killed = kill_one_training_job(cluster, workdir / "results", process)
    process.wait(timeout=900)
    seconds = time.time() - start
    log = (workdir / "snakemake.log").read_text()
    print(f"\nSLURM workflow: {seconds:.0f} s, killed job {killed}")
    return {
        "workdir": workdir,
        "log": log,
        "code": process.returncode,
        "killed": killed,
        "cluster": cluster,
    }


def submitted(log: str) -> dict[str, str]:
    """SLURM job id -> rule, from the executor's log lines."""
    pattern = r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/"
    return {m[1]: m[2] for m in re.finditer(pattern, log)}


# The jobs that do the work go to the scheduler; the light ones (plans, figures, priors, the
# summary and the report; `localrule: True` in their rule files) run where Snakemake runs.
CLUSTER_RULES = {"theory_fewshot", "theory_gaussian", "simulate_psp", "fit_kappa", "train"}
LOCAL_RULES = {
    "plan_trials",
    "morphology_figure",
    "kappa_figures",
    "build_prior",
    "prior_statistics",
    "summarise_dataset",
    "report",
}


def test_jobs_went_through_the_scheduler(slurm_run):
    assert slurm_run["code"] == 0, slurm_run["log"][-5000:]
    profile = slurm_run["workdir"] / "profile"  # in place of profiles/default, as documented
    assert f"Using workflow specific profile {profile} for setting" in slurm_run["log"]
    jobs = submitted(slurm_run["log"])
    history = slurm_run["cluster"].completed_jobs()
    print(f"SLURM jobs: {jobs}; states: {history}")
    assert set(jobs.values()) == CLUSTER_RULES
    assert list(jobs.values()).count("train") == 2  # cancelled, then resubmitted
    assert set(jobs) <= set(history)
    assert history[slurm_run["killed"]] == "CANCELLED"
    assert sum(state == "COMPLETED" for state in history.values()) == len(jobs) - 1
    ran_here = set(re.findall(r"^localrule (\w+):", slurm_run["log"], flags=re.MULTILINE))
    assert ran_here == LOCAL_RULES | {"all"}


def test_killed_training_job_was_resubmitted_and_resumed(slurm_run, tiny_workflow):
    results, local_results = slurm_run["workdir"] / "results", tiny_workflow[0] / "results"
    logs = list((slurm_run["workdir"] / ".snakemake/slurm_logs/rule_train").rglob("*.log"))
    resumed = [p for p in logs if "resuming" in p.read_text()]
    assert resumed, "no training job resumed from a checkpoint"
    metrics = f"train/fashion_mnist/{TRAIN_RUN}/seed0/metrics.json"
    here = json.loads((results / metrics).read_text())
    local = json.loads((local_results / metrics).read_text())
    assert here["world_size"] == 2  # trained through torchrun inside the allocation
    assert here["final"] == local["final"]
    assert here["best"] == local["best"]


def test_outputs_equal_a_local_run(slurm_run, tiny_workflow):
    here, local = slurm_run["workdir"] / "results", tiny_workflow[0] / "results"
    for name in ("psp.nc", "kappa.nc"):
        with (
            xr.open_dataset(here / f"dendrite/pyramidal/{name}") as a,
            xr.open_dataset(local / f"dendrite/pyramidal/{name}") as b,
        ):
            variable = "v" if name == "psp.nc" else "kappa_EI"
            np.testing.assert_array_equal(a[variable].values, b[variable].values)
    import pandas as pd

    pd.testing.assert_frame_equal(
        pd.read_csv(here / "theory/gaussian_accuracy.csv"),
        pd.read_csv(local / "theory/gaussian_accuracy.csv"),
    )
    columns = ["model", "prior", "seeds", "top1_mean", "parameters", "macs_per_image"]
    model, prior = TRAIN_RUN.split("/")
    summaries = [pd.read_csv(r / "train/fashion_mnist/summary.csv") for r in (here, local)]
    rows = [
        s[(s.model == model) & (s.prior == prior)][columns].reset_index(drop=True)
        for s in summaries
    ]
    assert len(rows[0]) == 1
    pd.testing.assert_frame_equal(*rows)
    assert (here / "report/index.html").is_file()
