"""A low-rank quadratic form of a feature vector (the few-shot experiment's pixel model)."""

import torch
from torch import Tensor, nn


class LowRankQuadratic(nn.Module):
    """q_o(x) = sum_r (u_or . x)(v_or . x) for every output o; U ~ N(0, 1/D), V = 0."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.rank = rank
        self.u = nn.Parameter(torch.randn(out_features * rank, in_features) / in_features**0.5)
        self.v = nn.Parameter(torch.zeros(out_features * rank, in_features))

    def forward(self, x: Tensor) -> Tensor:
        products = (x @ self.u.t()) * (x @ self.v.t())
        return products.view(-1, self.out_features, self.rank).sum(-1)
