"""A single-node SLURM cluster for tests: munged, slurmctld and slurmd on localhost,
configured in a temporary folder from Debian's slurm-wlm and munge packages."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# Snakemake's job-step executor drops SLURM_CONF before calling srun inside a job, so srun
# must find the configuration where every SLURM installation keeps it: the test links it there.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")

BINARIES = (
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scancel",
    "sinfo",
    "srun",
)

SLURM_CONF = """\
ClusterName=testcluster
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the test cluster, or None if it can."""
    if os.geteuid() != 0:
        return "the test SLURM cluster runs its daemons as root; not root here"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Debian's slurm-wlm and munge are not installed (missing {missing}); make test installs them"
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists: this machine has a SLURM of its own, which the test leaves alone"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    return 4000


class SlurmCluster:
    """Start with `start()`, always `stop()`: the daemons end and the folder is removed."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []
        self.host = socket.gethostname()

    @property
    def env(self) -> dict[str, str]:
        # LD_BIND_NOW makes SLURM's plugins fail to load (their controller-only symbols)
        clean = {k: v for k, v in os.environ.items() if k != "LD_BIND_NOW"}
        return {**clean, "SLURM_CONF": str(self.root / "slurm.conf")}

    def start(self) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True)
        subprocess.run(["mungekey", "--create", f"--keyfile={self.root}/munge.key"], check=True)
        self._daemon(
            [
                "munged",
                "-F",
                "-f",
                f"--key-file={self.root}/munge.key",
                f"--socket={self.root}/munge.sock",
                f"--pid-file={self.root}/munged.pid",
                f"--log-file={self.root}/munged.log",
                f"--seed-file={self.root}/munged.seed",
            ]
        )
        self._wait_for(lambda: (self.root / "munge.sock").exists(), "munged")
        conf = SLURM_CONF.format(
            host=self.host,
            root=self.root,
            ctld_port=_free_port(),
            d_port=_free_port(),
            cpus=os.cpu_count(),
            memory=_memory_mb(),
        )
        (self.root / "slurm.conf").write_text(conf)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.unlink(missing_ok=True)
        SYSTEM_CONF.symlink_to(self.root / "slurm.conf")
        self._daemon(["slurmctld", "-D", "-i", "-f", str(self.root / "slurm.conf")])
        self._daemon(["slurmd", "-D", "-f", str(self.root / "slurm.conf")])
        self._wait_for(self._node_idle, "slurmd to register as idle")

    def _daemon(self, command: list[str]) -> None:
        log = open(self.root / f"{command[0]}.out", "w")
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        )

    def _node_idle(self) -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env
        )
        return out.stdout.strip() == "idle"

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not ready():
            if time.time() > deadline:
                logs = {p.name: p.read_text()[-2000:] for p in self.root.glob("*.out")}
                raise RuntimeError(f"the test cluster did not come up ({what}); logs: {logs}")
            time.sleep(0.3)

    def squeue(self) -> list[tuple[str, str, str]]:
        """(job id, comment, state) of every job slurmctld still knows."""
        out = subprocess.run(
            ["squeue", "--states=all", "-h", "-o", "%i|%k|%T"],
            capture_output=True,
            text=True,
            env=self.env,
        ).stdout
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], check=True, env=self.env)

    def completed_jobs(self) -> dict[str, str]:
        """Job id -> final state, from slurmctld's job completion log."""
        path = self.root / "jobcomp.log"
        if not path.exists():
            return {}
        states = {}
        for line in path.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            states[fields["JobId"]] = fields["JobState"]
        return states

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
        if SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
        shutil.rmtree(self.root, ignore_errors=True)
