"""The published numbers this project reproduces (the Dit-CNN talk's two tables), where each
comes from and how it was measured, and where this project deliberately differs.

CIFAR: parameters (millions) and top-1 accuracy (%) on CIFAR-10 and CIFAR-100 (mean, std
where given). ImageNet-1K at 224x224: parameters (millions), FLOPs (G) and top-1 (%).

`protocol(dataset, model)` says for a row which paper the number comes from, which network
produced it, how the accuracy was selected ("best": the best test accuracy over epochs, which
selects on the test set; "final": the last epoch's), and so which of our two accuracies (final
or best-of-epochs) it is compared with. `DEVIATIONS` lists, per model family and recipe, every
place where we deliberately differ from the official code or a baseline's paper and the
switch that restores the original (the README and the CIFAR/ImageNet report pages show it).
"""

CIFAR = {
    # model: (params C10, acc C10, params C100, acc C100 mean, acc C100 std)
    "resnet20": (0.27, 91.25, 0.30, 67.26, 0.68),
    "qresnet20": (0.81, 92.22, 0.84, 67.82, 0.52),
    "quadraresnet20": (0.81, 92.21, 0.84, 68.02, 0.44),
    "dit_resnet20": (0.30, 92.66, 0.33, 68.66, 0.34),
    "resnet32": (0.46, 92.49, 0.49, 68.52, 0.55),
    "qresnet32": (1.39, 93.10, 1.42, 69.41, 0.48),
    "quadraresnet32": (1.39, 93.11, 1.42, 69.54, 0.44),
    "dit_resnet32": (0.49, 93.17, 0.52, 69.68, 0.32),
    "resnet56": (0.86, 93.03, 0.89, 70.17, 0.67),
    "qresnet56": (2.55, 93.66, 2.58, 71.21, 0.44),
    "quadraresnet56": (2.55, 93.79, 2.58, 70.98, 0.76),
    "dit_resnet56": (0.89, 93.90, 0.92, 71.40, 0.35),
    "resnet110": (1.73, 93.57, 1.76, 70.84, 0.76),
    "qresnet110": (5.17, 93.88, 5.20, 71.58, 0.87),
    "quadraresnet110": (5.17, 93.77, 5.20, 71.72, 0.81),
    "dit_resnet110": (1.76, 94.33, 1.79, 72.40, 0.85),
}

IMAGENET = {
    # model: (params M, FLOPs G, top-1 %)
    "convnext_tiny": (29, 4.5, 82.1),
    "dit_convnext_tiny": (29, 5.0, 82.6),
    "convnext_small": (50, 8.7, 83.1),
    "dit_convnext_small": (50, 9.2, 83.6),
    "convnext_base": (89, 15.4, 83.8),
    "dit_convnext_base": (90, 16.7, 84.2),
}


def published(dataset: str, model: str) -> dict | None:
    """The talk's numbers for (dataset, model), or None where it has none."""
    if dataset in ("cifar10", "cifar100") and model in CIFAR:
        p10, a10, p100, a100, s100 = CIFAR[model]
        if dataset == "cifar10":
            return {"params_M": p10, "top1": a10, "top1_std": None}
        return {"params_M": p100, "top1": a100, "top1_std": s100}
    if dataset == "imagenet" and model in IMAGENET:
        params, flops, top1 = IMAGENET[model]
        return {"params_M": params, "flops_G": flops, "top1": top1, "top1_std": None}
    return None


HE_ET_AL = (
    "He et al. 2016 (Deep residual learning), Table 6: option-A (zero-padding) shortcuts and a "
    "64-wide globally pooled head, not the Dit-code ResNet of our resnet* rows (1x1-convolution "
    "shortcuts, 256-wide 4x4-pooled head); the network after the last iteration (ResNet-110: the "
    "best of 5 runs)"
)


def protocol(dataset: str, model: str) -> dict[str, str] | None:
    """Source, selection and comparability of the published number of (dataset, model)."""
    base = model.removesuffix("_transposed")
    if published(dataset, base) is None:
        return None
    if dataset == "imagenet":
        if model.startswith("dit_"):
            return {
                "source": "Dit-CNN paper: timm's train.py with the official command, whose "
                "checkpoint saver keeps the epoch of best (EMA) validation top-1",
                "selection": "best",
                "compare_with": "best",
            }
        return {
            "source": "ConvNeXt paper (Liu et al. 2022), quoted by the Dit-CNN paper; its "
            "selection rule is not stated",
            "selection": "unknown",
            "compare_with": "final",
        }
    family = base.rstrip("0123456789")
    if family == "resnet":
        if dataset == "cifar10":
            return {
                "source": HE_ET_AL + "; not comparable architecture-for-architecture",
                "selection": "final",
                "compare_with": "final",
            }
        return {
            "source": "cited to He et al. 2016, who report no CIFAR-100 results; origin, network "
            "and protocol not stated",
            "selection": "unknown",
            "compare_with": "none",
        }
    if family == "dit_resnet":
        transposed = model.endswith("_transposed")
        return {
            "source": "Dit-CNN official CIFAR scripts (best test accuracy over epochs; CIFAR-100 "
            "mean ± std over seeds), whose quadratic layer transposes its map: "
            + ("this row's network" if transposed else f"the network of {base}_transposed"),
            "selection": "best",
            "compare_with": "best",
        }
    cited = {"qresnet": "Fan et al. [12]", "quadraresnet": "QuadraLib [53]"}[family]
    return {
        "source": f"Dit-CNN paper's table, cited to {cited}; trained in the Dit-code layout (the "
        "parameter counts say so) with a protocol not stated and not in the official code; "
        "assumed that of the Dit-ResNets",
        "selection": "best (assumed)",
        "compare_with": "best",
    }


# Where we deliberately differ from the official code or a baseline's paper, and the switch
# that restores the original ("none": no switch; the reason says why).
DEVIATIONS = [
    {
        "scope": "dit_resnet*",
        "difference": "Q(LN h) is computed per pixel; the official CIFAR layer transposes its "
        "output map (reads pixels as (W, H), writes them as (H, W))",
        "why": "the per-pixel formula is the paper's equation and the ImageNet layer's",
        "switch": "model dit_resnet*_transposed (in the default CIFAR grid beside dit_resnet20)",
    },
    {
        "scope": "qresnet*",
        "difference": "every 3x3 convolution including the stem is a quadratic neuron; "
        "ReLinear's second half (shrinking the quadratic parameters' gradients) is not applied",
        "why": "Fan et al. define the neuron, not a ResNet; the table's parameter counts imply "
        "the quadratic stem; the Dit paper states no QResNet training rule",
        "switch": "none",
    },
    {
        "scope": "qresnet*, quadraresnet*",
        "difference": "Dit-code layout (1x1 shortcuts, 256-wide head), QuadraLib's own ResNet "
        "has a 64-wide head; neurons keep the block's stride",
        "why": "the table's parameter counts (0.81M ... 5.17M, 0.84M ... 5.20M) are those of "
        "the Dit-code layout",
        "switch": "none",
    },
    {
        "scope": "resnet*",
        "difference": "the Dit-code ResNet (option-B shortcuts, 256-wide head); the published "
        "CIFAR-10 numbers are He et al.'s option-A ResNets",
        "why": "it is the network the Dit code adds its term to; see the published-number "
        "column for what is comparable",
        "switch": "none (He et al.'s option-A ResNet is not implemented)",
    },
    {
        "scope": "recipe cifar",
        "difference": "the test set is evaluated after every epoch (the official script "
        "evaluates before each epoch, so its best includes the untrained network and misses "
        "the last epoch); summaries give both final and best-of-epochs accuracy",
        "why": "the final network is the one a user gets; best-of-epochs is test-set selection",
        "switch": "compare best_top1 (summary.csv) with the published Dit numbers",
    },
    {
        "scope": "recipe cifar",
        "difference": "the last partial batch of each epoch (80 images) is dropped",
        "why": "every update has the same batch size (one compiled graph, equal shards over "
        "processes)",
        "switch": "none",
    },
    {
        "scope": "recipe cifar: resnet110",
        "difference": "lr 0.01 in epoch 0 as for Dit-ResNet-56/110 (He et al.'s warm-up)",
        "why": "He et al. warm ResNet-110 up for about 400 iterations; no other baseline has a "
        "published warm-up",
        "switch": "recipe_overrides.cifar10/cifar100 (delete the entry)",
    },
    {
        "scope": "recipe imagenet",
        "difference": "bf16 autocast without loss scaling; the official command's --amp is "
        "float16 with a gradient scaler",
        "why": "bf16 has float32's exponent range (no loss scaling, no skipped steps) and is the "
        "native mixed precision of current GPUs",
        "switch": "none (float16 with loss scaling is not implemented)",
    },
    {
        "scope": "recipe imagenet: *convnext_small, *convnext_base",
        "difference": "drop path 0.4 (S), 0.5 (B): ASSUMPTION, the ConvNeXt paper's values; the "
        "Dit README gives only the Tiny command (0.1)",
        "why": "no published Dit-ConvNeXt-S/B command",
        "switch": "recipe_overrides.imagenet",
    },
    {
        "scope": "recipe imagenet",
        "difference": "one global batch of 4096 split over the processes (the command: 64 per GPU "
        "x 8 GPUs x 8 accumulation steps)",
        "why": "the same gradient for ConvNeXt (LayerNorm, no batch statistics)",
        "switch": "--micro-batches for accumulation",
    },
]
