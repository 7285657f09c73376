"""How fast the plan refuses what would exhaust the machine, and what a run's identity costs.

Each case of issue 25 that hung or ran out of memory at plan time is timed here through the
function the workflow calls, with the old behaviour's size beside it (counted, never built):
an alias bomb in a config file, 20,000 sites, a segmentation far too fine, an SWC point at
1e12 um and a radius of 1e-10 um. Then the dataset fingerprint of a run's identity on the
Fashion-MNIST files (all four hashed whole). Medians of --repeats runs; target: every
refusal under one second.

Usage: .venv/bin/python benchmarks/hostile_plans.py [--repeats 5] [--fashion-mnist DIR]
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from dendrite_sim.config import DendriteConfig  # noqa: E402
from dendrite_sim.config_file import ConfigFileError, read_config_file  # noqa: E402
from dendrite_sim.errors import InputError  # noqa: E402
from pipeline.plan_checks import count_compartments, count_trials  # noqa: E402


def median_seconds(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def refused(step, error: type[Exception]) -> str:
    try:
        step()
    except error as err:
        return str(err)
    return "NOT refused"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["l0: &l0 {a: lol, b: lol}"]
    for level in range(1, levels):
        refs = ", ".join(f"k{i}: *l{level - 1}" for i in range(width))
        lines.append(f"l{level}: &l{level} {{{refs}}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fashion-mnist", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    folder = Path(tempfile.mkdtemp())
    bomb = folder / "bomb.yaml"
    bomb.write_text(alias_bomb())
    far = folder / "far.swc"
    far.write_text("1 1 0 0 0 10 -1\n2 3 0 10 0 1 1\n3 3 0 1e12 0 1 2\n")
    thin = folder / "thin.swc"
    thin.write_text("1 1 0 0 0 10 -1\n2 3 0 10 0 1 1\n3 3 0 500 0 1e-10 2\n")
    fine = copy.deepcopy(config["dendrite"])
    fine["max_compartment_um"] = 1e-4
    fine_settings = DendriteConfig.from_mapping(fine)
    protocol = DendriteConfig.from_mapping(config["dendrite"]).protocol
    settings = DendriteConfig.from_mapping(config["dendrite"])
    cases = [
        (
            "alias bomb, 8 levels of 9 aliases (86 million leaf values)",
            lambda: refused(lambda: read_config_file(bomb), ConfigFileError),
        ),
        (
            "n_sites 20000: trials counted (4e8 site pairs not listed)",
            lambda: f"{sum(count_trials(20_000, protocol).values()):,} trials",
        ),
        (
            "max_compartment_um 1e-4 on the built-in cell",
            lambda: refused(
                lambda: count_compartments("pyramidal", "builtin:pyramidal", fine_settings),
                InputError,
            ),
        ),
        (
            "SWC point at y = 1e12 um",
            lambda: refused(lambda: count_compartments("far", str(far), settings), InputError),
        ),
        (
            "SWC radius 1e-10 um",
            lambda: refused(lambda: count_compartments("thin", str(thin), settings), InputError),
        ),
    ]
    print(f"{'case':62} {'median':>9}  outcome")
    for name, step in cases:
        outcome = step()
        seconds = median_seconds(step, args.repeats)
        verdict = "met" if seconds < 1 else "NOT met"
        print(f"{name:62} {seconds * 1e3:7.2f} ms  [{verdict}: < 1 s] {outcome[:90]}")
    root = Path(args.fashion_mnist)
    if (root / "train-images-idx3-ubyte.gz").is_file():
        from ann.engine.identity import dataset_fingerprint

        size = sum(p.stat().st_size for p in root.glob("*-ubyte.gz"))
        seconds = median_seconds(lambda: dataset_fingerprint("fashion_mnist", root), args.repeats)
        print(
            f"{'dataset fingerprint, Fashion-MNIST (' + f'{size / 2**20:.1f} MiB, 4 files)':62} "
            f"{seconds * 1e3:7.2f} ms"
        )
    else:
        print(f"dataset fingerprint: no Fashion-MNIST in {root} (--fashion-mnist DIR)")


if __name__ == "__main__":
    main()
