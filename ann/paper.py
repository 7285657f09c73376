"""The published numbers this project reproduces (the seed talk's two tables).

CIFAR: parameters (millions) and top-1 accuracy (%) on CIFAR-10 and CIFAR-100 (mean, std
where given). ImageNet-1K at 224x224: parameters (millions), FLOPs (G) and top-1 (%).
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
    """The seed's numbers for (dataset, model), or None where it has none."""
    if dataset in ("cifar10", "cifar100") and model in CIFAR:
        p10, a10, p100, a100, s100 = CIFAR[model]
        if dataset == "cifar10":
            return {"params_M": p10, "top1": a10, "top1_std": None}
        return {"params_M": p100, "top1": a100, "top1_std": s100}
    if dataset == "imagenet" and model in IMAGENET:
        params, flops, top1 = IMAGENET[model]
        return {"params_M": params, "flops_G": flops, "top1": top1, "top1_std": None}
    return None
