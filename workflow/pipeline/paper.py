"""The published numbers this project reproduces (the Dit-CNN talk's two tables), where each
comes from and how it was measured, and where this project deliberately differs.

CIFAR: parameters (millions) and top-1 accuracy (%) on CIFAR-10 and CIFAR-100 (mean, std
where given). ImageNet-1K at 224x224: parameters (millions), FLOPs (G) and top-1 (%).

`protocol(dataset, model)` says for a row which paper the number comes from, which network
produced it, how the accuracy was selected ("best": the best test accuracy over epochs, which
selects on the test set; "final": the last epoch's), and so which of our two accuracies (final
or best-of-epochs) it is compared with. `OFFICIAL_RECIPES` holds, per recipe of config.yaml
that replicates a published protocol, the value of every recipe key that the official code,
command or paper sets, with its source; `DEVIATIONS` lists every place where we deliberately
differ from the official code or a baseline's paper and the switch that restores the
original (docs/replication.md and the CIFAR/ImageNet report pages show it).
tests/test_replication.py fails when a recipe differs from its official values in a key that
no deviation lists, when a deviation lists a key that does not differ, and when
docs/replication.md's table is not DEVIATIONS.
"""

from fnmatch import fnmatchcase

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
            "source": "ConvNeXt paper (Liu et al. 2022), quoted by the Dit-CNN paper, with its "
            "own recipe (here: recipe convnext); the released weights are the EMA's; its "
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
    cited, trainer = {
        "qresnet": ("Fan et al. [12]", "Fan's trainer (recipe qresnet)"),
        "quadraresnet": ("QuadraLib [53]", "QuadraLib's trainer (recipe quadralib)"),
    }[family]
    return {
        "source": f"Dit-CNN paper's table, cited to {cited}; how that number was trained is not "
        f"stated; here {trainer}, which keeps the best test accuracy over epochs",
        "selection": "best (assumed)",
        "compare_with": "best",
    }


# The official value of each recipe key that the source sets, and the source. A recipe of
# config.yaml is compared with the entry of its name, then with the entries of OFFICIAL_MODELS
# whose (recipe, model pattern) match the run (tests/test_replication.py); "peak_lr" stands for
# the learning rate after warm-up at the recipe's batch size (Recipe.peak_lr).
DIT_CIFAR = "Dit-CNN CIFAR/cifar10.py and cifar100.py"
DIT_COMMAND = "Dit-CNN README: the ImageNet command"
TIMM = "timm train.py's default (the command leaves it out)"
FAN = "ReLinear TrainQuadraticNetworksViaReLinear/qtrainer_10_5.py"
QUADRALIB = "QuadraLib image_classification/train.py, experiment/cifar_resnet/config.yaml"
QUADRALIB_AUG = "QuadraLib image_classification/utils.py, data_augmentation"
CONVNEXT = "ConvNeXt main.py default"
CONVNEXT_COMMAND = "ConvNeXt TRAINING.md: the ImageNet-1K commands"
CONVNEXT_PAPER = "ConvNeXt paper, Sec. 3 and Table 5"
ONE_PROCESS = "trains in one process: BatchNorm over the whole batch (sync_bn restores it)"
NO_MIXING = {
    key: (value, "no such augmentation in the official script")
    for key, value in (("mixup", 0.0), ("cutmix", 0.0), ("re_prob", 0.0), ("label_smoothing", 0.0))
}
CIFAR_SGD = {
    "optimizer": ("sgd", "optim.SGD"),
    "momentum": (0.9, "SGD momentum 0.9"),
    "crop_padding": (4, "RandomCrop(32, padding=4)"),
    "flip": (True, "RandomHorizontalFlip()"),
    "precision": ("fp32", "no autocast, no --half"),
    "sync_bn": (True, ONE_PROCESS),
    "clip_grad_norm": (None, "no gradient clipping"),
    "model_ema": (False, "no EMA"),
    "train_subset": (None, "the whole training set"),
    **NO_MIXING,
}
IMAGENET_COMMON = {
    "epochs": (300, "300 epochs"),
    "batch_size": (4096, "global batch 4096"),
    "optimizer": ("adamw", "AdamW"),
    "schedule": ("cosine", "cosine decay"),
    "warmup_epochs": (20, "20 warm-up epochs"),
    "input_size": (224, "224 x 224"),
    "re_prob": (0.25, "random erasing 0.25"),
    "re_mode": ("pixel", "--remode pixel (default)"),
    "mixup": (0.8, "mixup 0.8"),
    "cutmix": (1.0, "cutmix 1.0"),
    "label_smoothing": (0.1, "label smoothing 0.1"),
    "model_ema": (True, "EMA of the weights"),
    "clip_grad_norm": (None, "no gradient clipping (--clip-grad None)"),
    "dit_lr_mult": (1.0, "one learning rate for every parameter"),
}
OFFICIAL_RECIPES: dict[str, dict[str, tuple[object, str]]] = {
    "cifar": {
        **CIFAR_SGD,
        "epochs": (160, f"{DIT_CIFAR}: --epochs 160"),
        "batch_size": (128, f"{DIT_CIFAR}: -b 128"),
        "lr": (0.1, f"{DIT_CIFAR}: --lr 0.1"),
        "weight_decay": (1e-4, f"{DIT_CIFAR}: --wd 1e-4, both groups"),
        "schedule": ("multistep", f"{DIT_CIFAR}: lr x 0.1 at epochs 80 and 120"),
        "milestones": ((80, 120), f"{DIT_CIFAR}: epochs 80 and 120"),
        "gamma": (0.1, f"{DIT_CIFAR}: lr x 0.1"),
        "warmup_epochs": (0, f"{DIT_CIFAR}: the warm-up block is for dit-resnet-56/110 only"),
        "dit_lr_mult": (10.0, f"{DIT_CIFAR}: 'quadratic' and 'ln_in' parameters at 10 x lr"),
        "mean": ((0.4914, 0.4822, 0.4465), f"{DIT_CIFAR}: Normalize, CIFAR-100 too"),
        "std": ((0.2023, 0.1994, 0.2010), f"{DIT_CIFAR}: Normalize, CIFAR-100 too"),
    },
    "qresnet": {
        **CIFAR_SGD,
        "epochs": (200, f"{FAN}: --epochs 200"),
        "batch_size": (128, f"{FAN}: -b 128"),
        "lr": (0.1, f"{FAN}: --lr 0.1"),
        "weight_decay": (1e-4, f"{FAN}: --wd 1e-4, every group"),
        "schedule": ("multistep", f"{FAN}: MultiStepLR"),
        "milestones": ((100, 150), f"{FAN}: MultiStepLR(milestones=[100, 150])"),
        "gamma": (0.1, f"{FAN}: MultiStepLR's default gamma 0.1"),
        "warmup_epochs": (0, f"{FAN}: no warm-up"),
        "fan_gb_lr_mult": (1e-4, f"{FAN}: --lr_gb 1e-5 for the g and b groups, --lr 0.1"),
        "mean": ((0.485, 0.456, 0.406), f"{FAN}: Normalize (ImageNet's statistics)"),
        "std": ((0.229, 0.224, 0.225), f"{FAN}: Normalize (ImageNet's statistics)"),
    },
    "quadralib": {
        **CIFAR_SGD,
        "epochs": (200, f"{QUADRALIB}: epoch 200"),
        "batch_size": (256, f"{QUADRALIB}: batch_size 256"),
        "lr": (0.1, f"{QUADRALIB}: learning_rate 0.1"),
        "weight_decay": (5e-4, f"{QUADRALIB}: optim.SGD(weight_decay=5e-4)"),
        "schedule": ("cosine", f"{QUADRALIB}: CosineAnnealingLR(T_max=epoch)"),
        "min_lr": (1e-4, f"{QUADRALIB}: eta_min = final_learning_rate 0.0001"),
        "sched_on_updates": (False, f"{QUADRALIB}: scheduler.step() once per epoch"),
        "warmup_epochs": (0, f"{QUADRALIB}: no warm-up"),
        "clip_grad_norm": (0.5, f"{QUADRALIB}: clip_grad_norm_(net.parameters(), 0.5)"),
        "mean": ((0.4914, 0.4822, 0.4465), f"{QUADRALIB_AUG}: cifar10"),
        "std": ((0.2023, 0.1994, 0.2010), f"{QUADRALIB_AUG}: cifar10"),
    },
    "imagenet": {
        **IMAGENET_COMMON,
        "epochs": (300, f"{DIT_COMMAND}: --epochs 300"),
        "batch_size": (4096, f"{DIT_COMMAND}: -b 64, 8 GPUs, --grad-accum-steps 8"),
        "peak_lr": (6e-3, f"{DIT_COMMAND}: --lr 0.006 (used as given)"),
        "weight_decay": (0.08, f"{DIT_COMMAND}: --weight-decay 0.08"),
        "warmup_epochs": (20, f"{DIT_COMMAND}: --warmup-epochs 20"),
        "warmup_lr": (1e-5, TIMM),
        "warmup_prefix": (False, TIMM),
        "min_lr": (0.0, TIMM),
        "sched_on_updates": (False, TIMM),
        "crop_pct": (0.95, f"{DIT_COMMAND}: --crop-pct 0.95"),
        "auto_augment": ("rand-m9-mstd0.5", f"{DIT_COMMAND}: --aa rand-m9-mstd0.5"),
        "re_num_splits": (2, f"{DIT_COMMAND}: --resplit (timm: re_num_splits 2)"),
        "train_interpolation": ("random", TIMM),
        "mixup_chunk": (64, f"{DIT_COMMAND}: -b 64; FastCollateMixup draws per loader batch"),
        "mix_then_erase": (True, f"{TIMM}: the prefetcher erases after the collate mixes"),
        "drop_path": (0.1, f"{DIT_COMMAND}: --drop-path 0.1"),
        "ema_decay": (0.9998, TIMM),
        "precision": ("fp16", f"{DIT_COMMAND}: --amp (float16, loss scaling)"),
        "data_pipeline": ("timm", "timm's loader: PIL in the workers"),
    },
    "convnext": {
        **IMAGENET_COMMON,
        "peak_lr": (4e-3, f"{CONVNEXT_COMMAND}: --lr 4e-3 at batch 4096"),
        "weight_decay": (0.05, f"{CONVNEXT}: --weight_decay 0.05"),
        "warmup_lr": (0.0, "ConvNeXt utils.cosine_scheduler: warm-up from 0"),
        "warmup_prefix": (True, "ConvNeXt utils.cosine_scheduler: cosine after the warm-up"),
        "min_lr": (1e-6, f"{CONVNEXT}: --min_lr 1e-6"),
        "sched_on_updates": (True, "ConvNeXt engine.py: lr set every iteration"),
        "crop_pct": (0.875, "ConvNeXt datasets.py: crop_pct 224 / 256"),
        "auto_augment": ("rand-m9-mstd0.5-inc1", f"{CONVNEXT}: --aa"),
        "re_num_splits": (0, f"{CONVNEXT}: --resplit False"),
        "train_interpolation": ("bicubic", f"{CONVNEXT}: --train_interpolation bicubic"),
        "mixup_chunk": (128, f"{CONVNEXT_COMMAND}: --batch_size 128 per GPU, Mixup per batch"),
        "mix_then_erase": (False, "ConvNeXt: the transform erases, engine.py mixes after"),
        "drop_path": (0.1, f"{CONVNEXT_COMMAND}: --drop_path 0.1 (T)"),
        "ema_decay": (0.9999, f"{CONVNEXT}: --model_ema_decay 0.9999; {CONVNEXT_PAPER}"),
        "precision": ("fp32", f"{CONVNEXT_COMMAND}: no --use_amp"),
        "data_pipeline": ("timm", "ConvNeXt: torchvision ImageFolder with timm's PIL transforms"),
    },
}
OFFICIAL_RECIPES["quadralib_cifar100"] = {
    **OFFICIAL_RECIPES["quadralib"],
    "mean": ((0.5071, 0.4867, 0.4408), f"{QUADRALIB_AUG}: cifar100"),
    "std": ((0.2675, 0.2565, 0.2761), f"{QUADRALIB_AUG}: cifar100"),
}
OFFICIAL_MODELS: dict[tuple[str, str], dict[str, tuple[object, str]]] = {
    ("cifar", "dit_resnet56*"): {
        "warmup_epochs": (1, f"{DIT_CIFAR}: lr x 0.1 in epoch 0 (dit-resnet-56/110)"),
        "warmup_lr": (0.01, f"{DIT_CIFAR}: lr x 0.1 in epoch 0 (dit-resnet-56/110)"),
    },
    ("cifar", "dit_resnet110*"): {
        "warmup_epochs": (1, f"{DIT_CIFAR}: lr x 0.1 in epoch 0 (dit-resnet-56/110)"),
        "warmup_lr": (0.01, f"{DIT_CIFAR}: lr x 0.1 in epoch 0 (dit-resnet-56/110)"),
    },
    ("convnext", "convnext_small"): {"drop_path": (0.4, f"{CONVNEXT_COMMAND}: ConvNeXt-S")},
    ("convnext", "convnext_base"): {"drop_path": (0.5, f"{CONVNEXT_COMMAND}: ConvNeXt-B")},
    # ASSUMPTION (a deviation row says so): no published Dit-ConvNeXt-S/B command.
    ("imagenet", "dit_convnext_small"): {"drop_path": (0.4, "ASSUMPTION: ConvNeXt-S's")},
    ("imagenet", "dit_convnext_base"): {"drop_path": (0.5, "ASSUMPTION: ConvNeXt-B's")},
}


def official_values(recipe: str, model: str) -> dict[str, tuple[object, str]]:
    """The official value and source of each key of `recipe` for `model` (empty for recipes
    that replicate nothing published, such as the Fashion-MNIST ones)."""
    values = dict(OFFICIAL_RECIPES.get(recipe, {}))
    for (name, pattern), extra in OFFICIAL_MODELS.items():
        if name == recipe and fnmatchcase(model, pattern):
            values |= extra
    return values


# Where we deliberately differ from the official code or a baseline's paper, and the switch
# that restores the original ("none": no switch; the reason says why). The report pages and
# docs/replication.md show scope, difference, why and switch; `datasets` says which pages,
# `recipes` and `models` (a pattern) which runs a row concerns, and `keys` the recipe keys
# whose value differs from OFFICIAL_RECIPES (tests/test_replication.py checks both ways).
CIFAR_PAGES = ("cifar10", "cifar100")
IMAGENET_PAGE = ("imagenet",)
DEVIATIONS = [
    {
        "scope": "dit_resnet*",
        "difference": "Q(LN h) is computed per pixel; the official CIFAR layer transposes its "
        "output map (reads pixels as (W, H), writes them as (H, W))",
        "why": "the per-pixel formula is the paper's equation and the ImageNet layer's",
        "switch": "model dit_resnet*_transposed (in the default CIFAR grid beside dit_resnet20)",
        "datasets": CIFAR_PAGES,
    },
    {
        "scope": "qresnet*, quadraresnet*",
        "difference": "the Dit-code layout (1x1-convolution shortcuts, 4x4-pooled 256-wide head); "
        "Fan's QResNet has option-A (zero-padding) shortcuts and a 64-wide globally pooled head, "
        "QuadraLib's ResNet 1x1 shortcuts and a 64-wide head; neurons keep the block's stride",
        "why": "the table's CIFAR-100 counts fit the Dit-code layout's 256-wide head (QResNet-20: "
        "0.83M here, 0.81M in Fan's layout, 0.84M published; QResNet-110: 5.21M, 5.18M, 5.20M); "
        "on CIFAR-10 the layouts differ by 4,672 parameters, below the table's rounding",
        "switch": "none (the baselines' own layouts are not implemented)",
        "datasets": CIFAR_PAGES,
    },
    {
        "scope": "resnet*",
        "difference": "the Dit-code ResNet (option-B shortcuts, 256-wide head); the published "
        "CIFAR-10 numbers are He et al.'s option-A ResNets",
        "why": "it is the network the Dit code adds its term to; see the published-number "
        "column for what is comparable",
        "switch": "none (He et al.'s option-A ResNet is not implemented)",
        "datasets": CIFAR_PAGES,
    },
    {
        "scope": "recipe cifar",
        "difference": "the test set is evaluated after every epoch (the official script "
        "evaluates before each epoch, so its best includes the untrained network and misses "
        "the last epoch); summaries give both final and best-of-epochs accuracy",
        "why": "the final network is the one a user gets; best-of-epochs is test-set selection",
        "switch": "compare best_top1 (summary.csv) with the published Dit numbers",
        "datasets": CIFAR_PAGES,
        "recipes": ("cifar",),
    },
    {
        "scope": "recipes cifar, qresnet, quadralib",
        "difference": "the last partial batch of each epoch (80 images) is dropped",
        "why": "every update has the same batch size (one compiled graph, equal shards over "
        "processes)",
        "switch": "none",
        "datasets": CIFAR_PAGES,
        "recipes": ("cifar", "qresnet", "quadralib", "quadralib_cifar100"),
    },
    {
        "scope": "recipe cifar: resnet110",
        "difference": "lr 0.01 in epoch 0 as for Dit-ResNet-56/110 (He et al.'s warm-up)",
        "why": "He et al. warm ResNet-110 up for about 400 iterations; no other baseline has a "
        "published warm-up",
        "switch": "recipe_overrides.cifar10/cifar100 (delete the entry)",
        "datasets": CIFAR_PAGES,
        "recipes": ("cifar",),
        "models": "resnet110",
        "keys": ("warmup_epochs",),
    },
    {
        "scope": "recipe imagenet",
        "difference": "bf16 autocast without loss scaling; the official command's --amp is "
        "float16 with a gradient scaler",
        "why": "bf16 has float32's exponent range (no loss scaling, no skipped steps) and is the "
        "native mixed precision of current GPUs",
        "switch": "precision: fp32 (float16 with loss scaling is not implemented)",
        "datasets": IMAGENET_PAGE,
        "recipes": ("imagenet",),
        "keys": ("precision",),
    },
    {
        "scope": "recipe imagenet: dit_convnext_small, dit_convnext_base",
        "difference": "drop path 0.4 (S), 0.5 (B): ASSUMPTION, the ConvNeXt paper's values; the "
        "Dit README gives only the Tiny command (0.1)",
        "why": "no published Dit-ConvNeXt-S/B command",
        "switch": "recipe_overrides.imagenet",
        "datasets": IMAGENET_PAGE,
        "recipes": ("imagenet",),
        "models": "dit_convnext_[sb]*",
    },
    {
        "scope": "recipes imagenet, convnext",
        "difference": "one global batch of 4096 split over the processes (the commands: 64 per "
        "GPU x 8 GPUs x 8 accumulation steps; 128 per GPU x 32 GPUs), in loader batches of "
        "mixup_chunk images as the official per-GPU batches",
        "why": "the same gradient and augmentation for ConvNeXt (LayerNorm, no batch statistics)",
        "switch": "--micro-batches for accumulation",
        "datasets": IMAGENET_PAGE,
        "recipes": ("imagenet", "convnext"),
    },
    {
        "scope": "recipe imagenet",
        "difference": "each epoch's last 3,215 training images (1,281,167 - 312 x 4096) are "
        "dropped; timm's train.py makes a 313th, smaller update of 3,072 of them (6 of its 8 "
        "accumulation steps)",
        "why": "every update has the same batch size and weight (the ConvNeXt code drops them too)",
        "switch": "none",
        "datasets": IMAGENET_PAGE,
        "recipes": ("imagenet",),
    },
    {
        "scope": "recipe convnext",
        "difference": "bf16 autocast; the ConvNeXt commands train in float32 (no --use_amp)",
        "why": "the Dit-ConvNeXt rows train in mixed precision too, and bf16 halves the time",
        "switch": "recipes.convnext.precision: fp32",
        "datasets": IMAGENET_PAGE,
        "recipes": ("convnext",),
        "keys": ("precision",),
    },
    {
        "scope": "recipe convnext",
        "difference": "training images are decoded and augmented on the device "
        "(data_pipeline gpu: timm's draws, pixels within a grey level of PIL's)",
        "why": "Pillow 13 refuses the 0-bit posterize that timm's rand-m9-mstd0.5-inc1 reaches "
        "at magnitude 10, so timm's PIL pipeline stops there",
        "switch": "data_pipeline: timm, with Pillow < 13",
        "datasets": IMAGENET_PAGE,
        "recipes": ("convnext",),
        "keys": ("data_pipeline",),
    },
    {
        "scope": "recipe convnext",
        "difference": "timm's linear warm-up reaches the peak lr at update W (20 epochs of "
        "updates), ConvNeXt's np.linspace(0, lr, W) at update W - 1: each warm-up lr is "
        "(W - 1) / W of ConvNeXt's (0.016 % smaller at 312 updates per epoch)",
        "why": "timm's scheduler, as for every other recipe",
        "switch": "none",
        "datasets": IMAGENET_PAGE,
        "recipes": ("convnext",),
    },
]
