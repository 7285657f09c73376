"""How a prior acts on a network in training (`priors` modes) and how large it starts.

Modes: a run names its prior as `<prior>` (mode init) or `<prior>+<mode>`.
  init    K starts at the prior and trains freely (with the recipe's weight decay toward 0):
          the Dit paper's scheme with another starting point.
  anchor  K = K_prior + D with D trained from 0 and weight-decayed with `anchor_strength`: a
          Gaussian prior centred on K_prior, so decay pulls K toward the prior instead of 0
          (L2-SP: Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with
          convolutional networks", ICML 2018). With the zero prior it is plain weight decay on K
          at that strength, the reference anchor runs are compared with.
  fixed   K = g_o * K_prior,o: the prior's pattern stays, only one gain per output unit trains
          (from 1, not decayed), as a "fixed pattern, learned gain" prior (with zero the layer's
          quadratic term is off).
The modes are torch parametrizations of the DitQuadratic weight
(torch.nn.utils.parametrize), so the layer, the custom operator and torch.compile see the
effective K as before; the state dict holds D (anchor) or g (fixed) and the prior as a buffer.

Calibration: the prior's size is set by `init_ratio`, the root-mean-square of its quadratic
response relative to a unit linear response on the same inputs, RMS(Q(z)) = init_ratio * RMS(z).
`gaussian` measures it analytically on z ~ N(0, I) (ann.priors.quadratic_rms; at most
init_ratio); `data` (the default) measures it on the layer's real inputs z for a batch of
training images at initialisation and rescales K to match exactly, layer by layer in network
order (a layer's inputs depend on the layers before it). Real activations are skewed and
correlated, so the same Gaussian size gives different real sizes per prior; calibrating on data
makes every prior start with the same real response. It runs in eval mode except for batch
norms, which normalise with the batch's statistics without updating their running estimates,
and leaves every random number generator and buffer as it found them.
"""

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from .errors import PriorError
from .layers import DitQuadratic
from .priors import quadratic_rms
from .settings import MODES

__all__ = [
    "AnchoredWeight",
    "GainedPattern",
    "apply_mode",
    "calibrate",
    "effective_weights",
    "weights_from_state",
]


class AnchoredWeight(nn.Module):
    """K = prior + D: the parametrization of anchor mode (D is what trains)."""

    def __init__(self, prior: Tensor) -> None:
        super().__init__()
        self.register_buffer("prior", prior.detach().clone())

    def forward(self, delta: Tensor) -> Tensor:
        return self.prior + delta

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight - self.prior


class GainedPattern(nn.Module):
    """K_o = g_o * pattern_o: the parametrization of fixed mode (the gains g train)."""

    def __init__(self, pattern: Tensor) -> None:
        super().__init__()
        self.register_buffer("pattern", pattern.detach().clone())

    def forward(self, gain: Tensor) -> Tensor:
        return gain[:, None] * self.pattern

    def right_inverse(self, weight: Tensor) -> Tensor:
        norms = (self.pattern**2).sum(1)
        fitted = (weight * self.pattern).sum(1) / norms.clamp_min(torch.finfo(norms.dtype).tiny)
        return torch.where(norms > 0, fitted, torch.ones_like(fitted))


def dit_layers(model: nn.Module) -> dict[str, DitQuadratic]:
    return {name: m for name, m in model.named_modules() if isinstance(m, DitQuadratic)}


def apply_mode(model: nn.Module, mode: str, anchor_strength: float) -> dict[nn.Parameter, float]:
    """Make every Dit layer's current weight the prior of `mode`; return the weight decay of
    each parameter the mode creates (D: anchor_strength; g: none). init changes nothing."""
    if mode not in MODES:
        raise PriorError(f"unknown prior mode '{mode}'; choose one of {', '.join(MODES)}.")
    decay = {}
    for layer in dit_layers(model).values():
        if mode == "init":
            continue
        wrapper = AnchoredWeight if mode == "anchor" else GainedPattern
        parametrize.register_parametrization(layer, "weight", wrapper(layer.weight))
        decay[layer.parametrizations.weight.original] = anchor_strength if mode == "anchor" else 0.0
    return decay


def effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """The K every Dit layer computes with, by module name, whatever the mode."""
    return {name: layer.weight.detach().clone() for name, layer in dit_layers(model).items()}


def weights_from_state(state: Mapping[str, Tensor], layer: str) -> Tensor:
    """A Dit layer's effective K from a model state dict saved in any mode."""
    if f"{layer}.weight" in state:
        return state[f"{layer}.weight"]
    stem = f"{layer}.parametrizations.weight"
    original = state[f"{stem}.original"]
    if f"{stem}.0.prior" in state:
        return state[f"{stem}.0.prior"] + original
    return original[:, None] * state[f"{stem}.0.pattern"]


class _Captured(Exception):
    """Stops a forward pass once the measured layer has run."""


def _rms(x: Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def layer_response(model: nn.Module, images: Tensor, layer: nn.Module) -> tuple[float, float]:
    """RMS of a layer's input and of its output for `images`, running the model only as far
    as that layer."""
    seen = {}

    def capture(module: nn.Module, args: tuple, output: Tensor) -> None:
        seen["input"], seen["output"] = _rms(args[0]), _rms(output)
        raise _Captured

    handle = layer.register_forward_hook(capture)
    try:
        model(images)
    except _Captured:
        pass
    finally:
        handle.remove()
    return seen["input"], seen["output"]


@torch.no_grad()
def calibrate(model: nn.Module, images: Tensor, init_ratio: float) -> list[dict]:
    """Rescale every Dit layer with a nonzero K so that RMS(Q(z)) = init_ratio * RMS(z) on the
    layer's inputs z for `images` (module docstring); one record per layer: its response on
    N(0, I) before, the RMS of its real inputs, its real response ratio RMS(Q(z)) / RMS(z)
    before and after, and the scale."""
    layers = {name: layer for name, layer in dit_layers(model).items() if layer.weight.any()}
    if not layers:
        return []
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    training = {m: m.training for m in model.modules()}
    norms = {m: m.momentum for m in model.modules() if isinstance(m, _BatchNorm)}
    model.eval()
    for norm in norms:
        norm.train()
        norm.momentum = 0.0
    records = []
    try:
        with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
            for name, layer in layers.items():
                input_rms, output_rms = layer_response(model, images, layer)
                if not output_rms > 0:
                    raise PriorError(f"layer '{name}' gives no quadratic response to calibrate.")
                scale = init_ratio * input_rms / output_rms
                records.append(
                    {
                        "layer": name,
                        "gaussian_rms_before": quadratic_rms(layer.weight, layer.in_channels),
                        "input_rms": input_rms,
                        "data_rms_before": output_rms / input_rms,
                        "scale": scale,
                    }
                )
                layer.weight.mul_(scale)
            for record in records:
                input_rms, output_rms = layer_response(model, images, layers[record["layer"]])
                record["data_rms_after"] = output_rms / input_rms
        calibrated = {f"{name}.weight": layer.weight.clone() for name, layer in layers.items()}
    finally:
        model.load_state_dict(saved)
        for module, mode in training.items():
            module.training = mode
        for norm, momentum in norms.items():
            norm.momentum = momentum
    model.load_state_dict(saved | calibrated)
    return records
