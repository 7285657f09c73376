"""Writes that survive a crash at any point: files flushed to disk before they are renamed
into place, the report swapped without a moment in which the old report can be lost (tested
with a kill between the two renames), nothing written into a run folder before its lock is
taken, and no empty folder left by a run that failed."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ann.io
from ann.lock import RunLock
from pipeline import files

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [ann.io, files], ids=["ann.io", "pipeline.files"])
def test_write_atomic_flushes_the_file_then_renames_then_flushes_the_folder(
    tmp_path, monkeypatch, module
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "metrics.json"
    module.write_atomic(target, lambda tmp: Path(tmp).write_text("{}"))
    assert target.read_text() == "{}"
    [(kind0, first), (kind1, renamed), (kind2, folder)] = events
    assert (kind0, kind1, kind2) == ("fsync", "replace", "fsync")
    assert Path(first).parent == tmp_path and first.endswith(".tmp")  # the new file's data
    assert renamed == str(target) and folder == str(tmp_path)  # then its directory entry


KILL_BETWEEN_RENAMES = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from pipeline import files
real, calls = os.replace, []
def replace(src, dst):
    calls.append(dst)
    if len(calls) == 2:  # the old report moved aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
files.replace_folder(sys.argv[1], sys.argv[2])
"""


def report(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(text)
    return folder


def test_a_kill_in_the_middle_of_the_report_swap_loses_no_report(tmp_path):
    target = report(tmp_path / "report", "old")
    new = report(tmp_path / ".report.building", "new")
    killed = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_RENAMES, str(new), str(target), str(ROOT / "workflow")]
    )
    assert killed.returncode == -signal.SIGKILL
    aside = tmp_path / ".report.old"
    assert not target.exists() and (aside / "index.html").read_text() == "old"  # the window
    # the next report run: it puts the old report back first (build_report), and a swap
    # started there never deletes the only copy
    files.recover_folder(target)
    assert (target / "index.html").read_text() == "old" and not aside.exists()
    killed = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_RENAMES, str(new), str(target), str(ROOT / "workflow")]
    )
    assert killed.returncode == -signal.SIGKILL and not target.exists()
    files.replace_folder(report(tmp_path / "again", "newer"), target)
    assert (target / "index.html").read_text() == "newer" and not aside.exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    lock = RunLock(out)
    lock.acquire()
    assert (out / "train.lock").exists()
    lock.release()
    assert not (tmp_path / "a").exists()  # every folder the lock made, and nothing else
    lock.acquire()
    (out / "metrics.csv").write_text("epoch\n")
    lock.release()
    assert (out / "metrics.csv").exists()


def test_the_torchrun_config_is_not_written_into_the_run_folder(tmp_path, monkeypatch):
    """run_config.yaml was written into the run folder before the run took its lock."""
    from pipeline import training

    seen = {}

    def fake_run(command, env):
        config = Path(command[command.index("--config") + 1])
        seen.update(config=config, text=config.read_text(), folder_exists=out.exists())
        seen["command"] = command
        return subprocess.CompletedProcess(command, 0)

    out = tmp_path / "run"
    monkeypatch.setattr(training.subprocess, "run", fake_run)
    training.train_run({"train": {}}, "fashion_mnist", "resnet20", "none", 0, out, None, 2, 2)
    assert not seen["folder_exists"] and not out.exists()
    assert out not in seen["config"].parents and "train: {}" in seen["text"]
    assert not seen["config"].exists()  # removed when torchrun ended
    assert "--set-aside" in seen["command"]  # the workflow's choice for another identity
