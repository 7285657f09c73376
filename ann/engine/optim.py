"""Optimiser parameter groups: plain and quadratic parameters, weight-decayed or not."""

from collections.abc import Iterable, Mapping

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, _NormBase)


def parameter_groups(
    model: nn.Module,
    quadratic: Iterable[nn.Parameter],
    *,
    weight_decay: float,
    quadratic_lr_mult: float,
    decay_vectors: bool,
    decay_norms: bool = True,
    lr: float | None = None,
    decay_of: Mapping[nn.Parameter, float] | None = None,
) -> list[dict]:
    """Groups {plain, quadratic} x {decayed, not}, in the order parameters first appear.

    Matrices and kernels are weight-decayed; vectors (biases, norm scales) only when
    `decay_vectors` (SGD in the CIFAR recipes decays everything; AdamW recipes do not). With
    `decay_norms=False` no parameter of a normalisation layer is decayed, whatever its shape
    (the few-shot protocol: its Dit branch's LayerNorm over C x H x W has 3-D parameters).
    `decay_of` gives parameters a weight decay of their own (the prior modes' D and gains,
    ann.prior_modes.apply_mode).
    Each group's `lr_scale` is `quadratic_lr_mult` for the quadratic parameters, else 1
    (timm's schedulers read it); with `lr` the groups also carry `lr` = lr x lr_scale for
    optimisers without a scheduler.
    """
    quadratic_ids, seen = {id(p) for p in quadratic}, set()
    own_decay = {id(p): value for p, value in (decay_of or {}).items()}
    groups: dict[tuple[bool, bool, float | None], list[nn.Parameter]] = {}
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            decayed = (decay_vectors or p.ndim > 1) and (decay_norms or not is_norm)
            key = (id(p) in quadratic_ids, decayed, own_decay.get(id(p)))
            groups.setdefault(key, []).append(p)
    out = []
    for (is_quadratic, decayed, own), params in groups.items():
        scale = quadratic_lr_mult if is_quadratic else 1.0
        decay = weight_decay * decayed if own is None else own
        group = {"params": params, "lr_scale": scale, "weight_decay": decay}
        if lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out
