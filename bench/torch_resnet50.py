"""torchvision's ResNet-50 (`torchvision.models.resnet50()`, "v1.5": the stride of a stage's first
block on its 3x3) declared in plain torch at full widths, for bench/train_throughput.py's PyTorch
baseline of `sres50` (torchvision itself need not import with the installed torch). The modules,
forward and initialization are torchvision's: Kaiming-normal fan-out kernels, BN eps 1e-5 and
momentum 0.1 (TensorFlow's decay 0.9), the last BN of each block with scale 1 (torchvision's
default `zero_init_residual=False`)."""

import torch
from torch import nn

STEM, WIDTHS, BLOCKS, EXPANSION = 64, (64, 128, 256, 512), (3, 4, 6, 3), 4


class Bottleneck(nn.Module):
    """1x1, 3x3 with the stride, 1x1 (x4), + the shortcut (a projection if given), ReLU."""

    def __init__(self, inplanes, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision.models.resnet50(num_classes=...)'s modules and forward."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = STEM
        for s, (width, n) in enumerate(zip(WIDTHS, BLOCKS)):
            stride = 1 if s == 0 else 2
            downsample = nn.Sequential(nn.Conv2d(inplanes, width * EXPANSION, 1, stride,
                                                 bias=False),
                                       nn.BatchNorm2d(width * EXPANSION))
            blocks = [Bottleneck(inplanes, width, stride, downsample)]
            blocks += [Bottleneck(width * EXPANSION, width, 1, None) for _ in range(n - 1)]
            setattr(self, 'layer%d' % (s + 1), nn.Sequential(*blocks))
            inplanes = width * EXPANSION
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(4):
            x = getattr(self, 'layer%d' % (s + 1))(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
