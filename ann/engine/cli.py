"""Train and evaluate one (dataset, model, prior, seed) run from the command line.

    python -m ann.train --config config.yaml --dataset fashion_mnist --model dit_resnet20 \\
        --prior bio --kappa results/dendrite/pyramidal/kappa.nc --seed 0 --out results/train/x
    torchrun --nproc-per-node 4 -m ann.train ...      # DistributedDataParallel, one GPU each

On CUDA: the recipe's precision (bf16 autocast or fp32), channels_last and torch.compile
(`train.compile: auto`), with CUDA graphs for the device-resident datasets (fixed batch
shapes: the last partial training batch is dropped, evaluation batches are padded); on the
CPU: float32 with --threads threads, eager unless `train.compile: true`. Fashion-MNIST and
CIFAR live on the device as uint8 and are cropped, flipped and normalised there; every rank
draws the same global batch and augmentation and keeps its own rows, so N ranks compute what
one process computes with N micro-batches (BatchNorm over the whole batch with the recipe's
sync_bn).
ImageNet streams through timm's loaders (or, with `data_pipeline: gpu`, is decoded and
augmented on the device by ann.imagenet_gpu), with timm's RandAugment, random erasing, mixup
and cutmix, drop path, model EMA, AdamW and cosine schedule with warm-up.

In --out: metrics.csv (one row per epoch), checkpoint.pt (after every epoch) and, at the
end, metrics.json; all written atomically. Started again with the same settings, a run
resumes from its checkpoint and ends with the metrics of an uninterrupted run. A folder that
holds a run of another identity (any setting that changes the numbers: docs/reruns.md) is
refused with the differences and left untouched; --restart moves whatever run is there to
<out>/set_aside/<time>/ and starts over. A bad input (config key, file, checkpoint, dataset
folder) ends the command with one line and exit code 1.
"""

import argparse
import logging
import os
from pathlib import Path

from ann.errors import AnnError
from ann.recipes import parse_overrides

from .run import read_config, run_from_config
from .trainer import train

__all__ = ["main"]

log = logging.getLogger("ann.train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ann.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default="config.yaml", help="the pipeline's config.yaml")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--prior", default="none", help="none (plain models), zero, bio or shuffled"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="output folder of this run")
    parser.add_argument("--kappa", type=Path, help="kappa.nc for the bio and shuffled priors")
    parser.add_argument("--prior-file", type=Path, help="prior weights from the build_prior rule")
    parser.add_argument("--device", help="auto, cpu or cuda (default: train.device)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--micro-batches", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument(
        "--compile",
        choices=("auto", "true", "false"),
        help="torch.compile the model: auto (on CUDA only), true, false (default: train.compile)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--restart",
        action="store_true",
        help="start over: move a run already in --out to <out>/set_aside/<time>/",
    )
    existing.add_argument(
        "--set-aside",
        action="store_true",
        help="move a run of another identity in --out aside instead of refusing it (the "
        "workflow's choice: it reruns a job only when its settings changed)",
    )
    args = parser.parse_args(argv)
    main_process = int(os.environ.get("RANK", 0)) == 0
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING, format="%(asctime)s %(message)s"
    )
    try:
        overrides = parse_overrides(args.set)
        config = read_config(
            args.config, args.dataset, overrides, args.device or "auto", args.model
        )
        run = run_from_config(
            config,
            args.dataset,
            args.model,
            args.prior,
            args.seed,
            args.out,
            overrides,
            kappa=args.kappa,
            prior_file=args.prior_file,
            threads=args.threads,
            micro_batches=args.micro_batches,
            device=args.device,
            compile={"auto": "auto", "true": True, "false": False, None: None}[args.compile],
        )
        summary = train(
            run, "restart" if args.restart else "set_aside" if args.set_aside else "refuse"
        )
    except AnnError as err:
        log.error("error: %s", err)
        return 1
    log.info(
        "final test top-1 %.4f (best %.4f at epoch %d)",
        summary["final"]["test_top1"],
        summary["best"]["test_top1"],
        summary["best"]["epoch"],
    )
    return 0
