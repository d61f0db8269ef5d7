"""ResNet-18 for small images, in plain torch (no torchvision).

Owns ``ResNet18`` and ``BasicBlock``. The layout is the CIFAR variant used by the seeds' study
(and by CORDS): a 3x3 stride-1 stem and no max-pool, so a 28x28 or 32x32 image keeps its
resolution until the first strided stage; then the usual four stages of two basic blocks,
global average pooling and one linear classifier.

Two things are shaped for hpd's subset loaders (``hpd.subset.features.last_layer_features``):
the classifier is the model's *last* ``nn.Linear`` (``find_head`` picks the last one in module
order, and a forward hook on it catches the penultimate activations as its input), and it is
also exposed as ``model.fc`` with ``model.features(x)`` returning those penultimate activations,
so callers can pass ``head=model.fc`` explicitly and never rely on the search.

``width`` is the first stage's channel count (64 in the paper); stages use width x 1, 2, 4, 8.
A CPU smoke run uses width 4-16: the same architecture, a fraction of the cost.

Must never: hold data, know about hpd, or put any ``nn.Linear`` after ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (for 28x28 / 32x32 inputs)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 2:
            raise ValueError(f"bad ResNet18 shape: {in_channels=}, {num_classes=}, {width=}")
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        c_in = width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        # The classifier, registered last so that it is the model's last nn.Linear in module
        # order: hpd.subset's find_head() picks exactly that one.
        self.fc = nn.Linear(c_in, num_classes)

    @property
    def feature_dim(self) -> int:
        """Size of the penultimate activations (the classifier's input)."""
        return self.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [N, 8 * width]: what the last-layer gradients are made of."""
        out = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(self.features(x))
        return logits
