"""The quadratic convolutions of the two baselines of the Dit paper's CIFAR table.

- Fan, Cong & Wang, "A new type of neurons for machine learning" (2018), in convolutional form:
  (W_r*x + b_r) . (W_g*x + b_g) + W_b*(x . x) + c, initialised as Fan's code does
  (github.com/FengleiFan/ReLinear, qresnet.py): W_r Kaiming-normal, and ReLinear (Fan et al.,
  "Expressivity and trainability of quadratic networks", 2021) so that it starts linear.
- Xu et al., "QuadraLib" (MLSys 2022), Quadraour in image_classification/models/
  quadratic_layer.py: BN(W_1*x + b_1) . BN(W_2*x + b_2) + BN(W_3*x + b_3).
"""

from torch import Tensor, nn

__all__ = ["FanQuadraticConv2d", "QuadraConv2d"]


class FanQuadraticConv2d(nn.Module):
    """Fan et al.'s quadratic neuron: (W_r * x + b_r) . (W_g * x + b_g) + W_b * (x . x) + c.

    Starts linear (ReLinear): W_g = 0, b_g = 1, W_b = 0, c = 0, so the output is W_r * x + b_r
    until training moves the quadratic parameters; `reset_quadratic` restores that state.
    W_r is drawn from He et al.'s N(0, 2 / fan_in) (`kaiming_normal_`, as in Fan's qresnet.py),
    b_r keeps PyTorch's default; `reset_parameters` draws both and resets the rest."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__()
        self.conv_r = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.conv_g = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.conv_b = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv_r.weight)
        self.reset_quadratic()

    def reset_quadratic(self) -> None:
        nn.init.zeros_(self.conv_g.weight)
        nn.init.ones_(self.conv_g.bias)
        nn.init.zeros_(self.conv_b.weight)
        nn.init.zeros_(self.conv_b.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_r(x) * self.conv_g(x) + self.conv_b(x * x)


class QuadraConv2d(nn.Module):
    """QuadraLib's neuron: BN(W_1 * x + b_1) . BN(W_2 * x + b_2) + BN(W_3 * x + b_3)."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=True)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv1(x)) * self.bn2(self.conv2(x)) + self.bn3(self.conv3(x))
