"""What a network takes as input: the image size and the per-channel normalization of the pixels,
(x - mean) / std in pixel units. It belongs to the weights (torchvision's ResNet-50 expects
ImageNet's mean and std; the originals' CIFAR models x / 127.5 - 1), so a weight file records it
when it is not the model's default, and training, evaluation and export all read it from there."""

import dataclasses
import math
from typing import Tuple

INCEPTION = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))         # x / 127.5 - 1
TORCHVISION = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))  # ImageNet mean and std x 255
NORMALIZATIONS = {'inception': INCEPTION, 'torchvision': TORCHVISION}
MIN_SIZE, MAX_SIZE = 8, 4096


@dataclasses.dataclass(frozen=True)
class InputSpec:
    image_size: int
    mean: Tuple[float, float, float] = INCEPTION[0]
    std: Tuple[float, float, float] = INCEPTION[1]

    def __post_init__(self):
        if not (isinstance(self.image_size, int) and MIN_SIZE <= self.image_size <= MAX_SIZE):
            raise ValueError('image size %r is not a whole number in %d..%d'
                             % (self.image_size, MIN_SIZE, MAX_SIZE))
        values = tuple(self.mean) + tuple(self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or \
                not all(isinstance(v, float) and math.isfinite(v) for v in values) or \
                min(self.std) <= 0:
            raise ValueError('normalization needs 3 finite means and 3 positive finite stds')

    @property
    def normalization(self):
        return (self.mean, self.std)

    @property
    def normalization_name(self):
        """'inception', 'torchvision' or 'custom'."""
        for name, value in NORMALIZATIONS.items():
            if (tuple(self.mean), tuple(self.std)) == value:
                return name
        return 'custom'

    def describe(self):
        return '%dx%d, %s normalization' % (self.image_size, self.image_size,
                                            self.normalization_name)


def default_spec(model):
    """The model's own input: its image size, x / 127.5 - 1."""
    return InputSpec(model.image_size)


def spec_with(spec, image_size=None, normalization=None):
    """`spec` with the image size and/or named normalization replaced (flags over a file's)."""
    mean, std = NORMALIZATIONS[normalization] if normalization else (spec.mean, spec.std)
    return InputSpec(int(image_size) if image_size else spec.image_size, tuple(mean), tuple(std))


def normalize(images, normalization):
    """Graph op: pixels (any dtype, 0..255) -> float32 (x - mean) / std per channel; the inception
    normalization as x / 127.5 - 1 exactly, as the originals compute it."""
    import tensorflow.compat.v1 as tf
    x = tf.cast(images, tf.float32)
    if tuple(map(tuple, normalization)) == INCEPTION:
        return x / 127.5 - 1.0
    mean, std = normalization
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
