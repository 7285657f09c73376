"""Optimiser parameter groups: plain and quadratic parameters, weight-decayed or not."""

from collections.abc import Iterable

from torch import nn


def parameter_groups(
    model: nn.Module,
    quadratic: Iterable[nn.Parameter],
    *,
    weight_decay: float,
    quadratic_lr_mult: float,
    decay_vectors: bool,
    lr: float | None = None,
) -> list[dict]:
    """Groups {plain, quadratic} x {decayed, not}, in the order parameters first appear.

    Matrices and kernels are always weight-decayed; vectors (biases, norm scales) only when
    `decay_vectors` (SGD in the CIFAR recipes decays everything; AdamW recipes do not).
    Each group's `lr_scale` is `quadratic_lr_mult` for the quadratic parameters, else 1
    (timm's schedulers read it); with `lr` the groups also carry `lr` = lr x lr_scale for
    optimisers without a scheduler.
    """
    quadratic_ids = {id(p) for p in quadratic}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            decayed = decay_vectors or p.ndim > 1
            groups.setdefault((id(p) in quadratic_ids, decayed), []).append(p)
    out = []
    for (is_quadratic, decayed), params in groups.items():
        scale = quadratic_lr_mult if is_quadratic else 1.0
        group = {"params": params, "lr_scale": scale, "weight_decay": weight_decay * decayed}
        if lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out
