"""One training run per output folder (ann.lock), and metrics.json as strict JSON."""

import errno
import json
import logging
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from fixtures import write_fashion_mnist
from test_train import run_cli, tiny_config

from ann.engine import run_from_config, train
from ann.errors import LockError
from ann.io import save_json
from ann.lock import RunLock

HOLD = (
    "import sys, time\n"
    "from ann.lock import RunLock\n"
    "RunLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(folder, n_train=128, n_test=64, seed=1, learnable=True)
    return folder


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock of tmp_path/out, as a running training run does."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_stops_and_names_the_first(
    default_config, fmnist_root, tmp_path, holder, caplog
):
    out = tmp_path / "out"
    config = tiny_config(default_config, fmnist_root, epochs=1)
    result = subprocess.run(run_cli(config, out, tmp=tmp_path), capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"pid {holder.pid} on host {socket.gethostname()}" in errors[0]
    assert str(out / "train.lock") in errors[0] and "Wait for it to end" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["train.lock"]  # it wrote nothing

    # under torchrun only rank 0 takes the lock; every rank stops, none waits forever
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    torchrun += ["--master-port", "29541"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = torchrun + run_cli(config, out, tmp=tmp_path)[1:]
    ddp = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode != 0
    assert f"in use by another training run (pid {holder.pid} on host" in ddp.stderr
    assert sorted(p.name for p in out.iterdir()) == ["train.lock"]

    # the holder dies without releasing: the next run takes its lock over, with a warning
    holder.kill()
    holder.wait()
    run = run_from_config(config, "fashion_mnist", "resnet20", "none", 0, out, threads=1)
    with caplog.at_level(logging.WARNING, logger="ann.lock"):
        train(run)
    assert f"ended without releasing it (pid {holder.pid} on host" in caplog.text
    assert (out / "metrics.json").is_file() and not (out / "train.lock").exists()


def test_the_lock_is_released_and_can_be_taken_again(tmp_path):
    with RunLock(tmp_path) as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(LockError, match=f"pid {os.getpid()} on host"):
            RunLock(tmp_path).acquire()  # a second open file: flock refuses it too
    assert not (tmp_path / "train.lock").exists()
    with RunLock(tmp_path):
        pass


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without flock (some network file systems): the pid decides."""

    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("ann.lock.fcntl.flock", unsupported)


def write_owner(folder, **owner):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.lock").write_text(json.dumps(owner))


def test_without_flock_a_live_owner_on_this_host_keeps_the_lock(tmp_path, no_flock):
    alive = subprocess.Popen(["sleep", "600"])
    try:
        write_owner(tmp_path, pid=alive.pid, host=socket.gethostname(), started="then")
        with pytest.raises(LockError, match=f"pid {alive.pid} on host .*Wait for it to end"):
            RunLock(tmp_path).acquire()
    finally:
        alive.kill()
        alive.wait()


def test_without_flock_another_hosts_lock_is_refused(tmp_path, no_flock):
    write_owner(tmp_path, pid=1, host="node-elsewhere", started="then")
    with pytest.raises(LockError, match="if no run is alive on node-elsewhere, delete"):
        RunLock(tmp_path).acquire()


def test_without_flock_a_dead_owner_on_this_host_is_replaced(tmp_path, no_flock, caplog):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_owner(tmp_path, pid=gone.pid, host=socket.gethostname(), started="then")
    with caplog.at_level(logging.WARNING, logger="ann.lock"), RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(LockError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert f"ended without releasing it (pid {gone.pid} on host" in caplog.text
    assert not (tmp_path / "train.lock").exists()


def test_metrics_json_writes_null_for_nan_and_infinity(tmp_path):
    data = {
        "a": math.nan,
        "b": [1.5, math.inf, {"c": np.float32("nan")}],
        "d": np.float64(-np.inf),
        "e": (np.float32(0.5),),
        "f": None,
    }
    save_json(data, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in metrics.json")

    loaded = json.loads(text, parse_constant=refuse)
    assert loaded == {"a": None, "b": [1.5, None, {"c": None}], "d": None, "e": [0.5], "f": None}
