"""The few-shot experiment's models (MODEL_NAMES): softmax regression on the pixels, with or
without a low-rank quadratic term, and a small CNN with or without a Dit branch in its third
block (ann/theory/fewshot.py describes them). They are built by `build_model` for that
experiment only and are not registered in timm's registry."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ann.layers import DitQuadratic, LowRankQuadratic

from . import parameters_of

MODEL_NAMES = ("linear", "linear_quadratic", "cnn", "dit_cnn", "dit_cnn_sum")
NUM_CLASSES = 10
IMAGE_SIZE = 32
CNN_WIDTHS = (8, 16, 16)
DIT_MAP_SIZE = 8


def is_cnn(name: str) -> bool:
    return name in ("cnn", "dit_cnn", "dit_cnn_sum")


class PixelClassifier(nn.Module):
    """Softmax regression on the flattened pixels, optionally plus a low-rank quadratic term."""

    def __init__(self, in_features: int, num_classes: int, rank: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.quadratic = None if rank is None else LowRankQuadratic(in_features, num_classes, rank)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        scores = self.linear(x)
        if self.quadratic is not None:
            scores = scores + self.quadratic(x)
        return scores


class DitBlockBranch(nn.Module):
    """Q(LN(h)), LN normalising each channel over its spatial map."""

    def __init__(self, channels: int, map_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm((map_size, map_size))
        self.quadratic = DitQuadratic(channels, channels)

    def forward(self, h: Tensor) -> Tensor:
        return self.quadratic(self.norm(h))


class ConvBlock(nn.Module):
    """conv3x3-BN-(Dit)-ReLU-(maxpool): with a Dit branch, (BN(conv h) + Q(LN h)) / 2, or
    BN(conv h) + Q(LN h) with halve=False."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        stride: int = 1,
        pool: bool = True,
        dit_map_size: int | None = None,
        halve: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.dit = None if dit_map_size is None else DitBlockBranch(out_chs, dit_map_size)
        self.halve = halve
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def pre_activation(self, h: Tensor) -> Tensor:
        out = self.bn(self.conv(h))
        if self.dit is not None:
            out = out + self.dit(h)
            if self.halve:
                out = out / 2
        return out

    def forward(self, h: Tensor) -> Tensor:
        return self.pool(F.relu(self.pre_activation(h)))


class SmallCNN(nn.Module):
    """Three conv blocks (the first with stride 2 and no pool) and a linear head."""

    def __init__(
        self, num_classes: int = NUM_CLASSES, dit: bool = False, halve: bool = True
    ) -> None:
        super().__init__()
        first, second, third = CNN_WIDTHS
        self.blocks = nn.Sequential(
            ConvBlock(1, first, stride=2, pool=False),
            ConvBlock(first, second),
            ConvBlock(second, third, dit_map_size=DIT_MAP_SIZE if dit else None, halve=halve),
        )
        final_size = IMAGE_SIZE // 8
        self.head = nn.Linear(third * final_size * final_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(x).flatten(1))


def build_model(name: str, rank: int) -> nn.Module:
    if name == "linear":
        return PixelClassifier(IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES)
    if name == "linear_quadratic":
        return PixelClassifier(IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES, rank=rank)
    if is_cnn(name):
        return SmallCNN(NUM_CLASSES, dit=name.startswith("dit_"), halve=name == "dit_cnn")
    raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")


def quadratic_parameters(model: nn.Module) -> list[nn.Parameter]:
    return parameters_of(model, LowRankQuadratic, DitBlockBranch)
