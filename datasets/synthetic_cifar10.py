"""A CIFAR-shaped synthetic data set generated offline, for tests, demos and CI.

Ten classes = five texture families (horizontal stripes, vertical stripes, checkerboard, rings,
blobs) x two colour families (warm, cool) of the foreground, drawn on a random background with random
frequency, phase, position, contrast and pixel noise. Every class is unchanged by a horizontal flip, so
the standard pad-crop-flip augmentation keeps labels right. A small CNN learns it well above chance
in a few epochs; low-contrast, noisy images keep it from being trivial, and a network with too few
filters can no longer separate texture and colour, so accuracy falls when too much is pruned.
"""

import numpy as np

NUM_CLASSES = 10
_WARM = np.array([[1.0, 0.15, 0.1], [1.0, 0.75, 0.1], [0.9, 0.35, 0.6]])
_COOL = np.array([[0.1, 0.35, 1.0], [0.1, 0.85, 0.55], [0.45, 0.2, 0.95]])


def generate(num_images, seed):
    """Return (images uint8 [N,32,32,3], labels int64 [N]); deterministic in (num_images, seed)."""
    rng = np.random.default_rng(seed)
    n = int(num_images)
    labels = np.arange(n) % NUM_CLASSES
    rng.shuffle(labels)
    texture, warm = labels // 2, labels % 2 == 0

    yy, xx = np.meshgrid(np.arange(32, dtype=np.float64), np.arange(32, dtype=np.float64),
                         indexing='ij')
    xx, yy = xx[None], yy[None]
    freq = rng.uniform(0.10, 0.22, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2, 1, 1))
    cx = 15.5 + rng.uniform(-7, 7, size=(n, 1, 1))
    cy = 15.5 + rng.uniform(-7, 7, size=(n, 1, 1))
    two_pi_f = 2 * np.pi * freq

    field = np.empty((n, 32, 32))
    stripes_h = 0.5 + 0.5 * np.cos(two_pi_f * yy + phase[:, 0])
    stripes_v = 0.5 + 0.5 * np.cos(two_pi_f * xx + phase[:, 0])
    checker = 0.5 + 0.5 * np.cos(two_pi_f * xx + phase[:, 0]) * np.cos(two_pi_f * yy + phase[:, 1])
    rings = 0.5 + 0.5 * np.cos(two_pi_f * np.hypot(xx - cx, yy - cy) + phase[:, 0])
    # Blobs: two Gaussian spots placed symmetrically about a vertical axis (flip-invariant class).
    radius = rng.uniform(2.5, 5.0, size=(n, 1, 1))
    dx = rng.uniform(3, 10, size=(n, 1, 1))
    blobs = (np.exp(-((xx - 15.5 - dx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2)) +
             np.exp(-((xx - 15.5 + dx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2)))
    for t, pattern in enumerate((stripes_h, stripes_v, checker, rings, np.minimum(blobs, 1.0))):
        field[texture == t] = pattern[texture == t]

    palette = np.where(warm[:, None, None], _WARM[None], _COOL[None])      # [n, 3 colours, 3]
    mix = rng.dirichlet(np.ones(3), size=n)                                  # [n, 3]
    foreground = np.einsum('nk,nkc->nc', mix, palette)
    foreground = np.clip(foreground + rng.normal(0, 0.05, size=(n, 3)), 0, 1)
    background = rng.uniform(0.15, 0.85, size=(n, 3))
    gradient = rng.normal(0, 0.08, size=(n, 1, 1, 3)) * (yy[..., None] - 15.5) / 16
    contrast = rng.uniform(0.2, 0.85, size=(n, 1, 1, 1))
    alpha = contrast * field[..., None]
    image = background[:, None, None, :] * (1 - alpha) + foreground[:, None, None, :] * alpha
    image = image + gradient
    image += rng.normal(0, 1, size=image.shape) * rng.uniform(0.04, 0.16, size=(n, 1, 1, 1))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)
