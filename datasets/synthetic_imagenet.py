"""A synthetic ImageNet-shaped ImageFolder tree of generated JPEGs, for tests and smoke runs.

`write_tree(root, ...)` writes `root/train/<class>/<class>_<i>.JPEG`,
`root/val/<class>/<class>_val_<i>.JPEG` and `root/synset_names.txt` (`<class><TAB><text>` lines),
which datasets/build_imagenet_data.py converts like a real tree. Any number of classes: class c
has texture c mod 5 (horizontal stripes, vertical stripes, checkerboard, rings, mirrored blobs)
and a foreground hue set by c // 5 (golden-angle spacing), on a random background with random
frequency, phase, contrast and noise. Every pattern stays in its class under a horizontal flip.
Image sizes vary around `image_size` (area x0.6..1.4, aspect ratio w/h in 3:4..4:3).
Deterministic in the seed.
"""

import colorsys
import os

import numpy as np

TEXTURES = ('horizontal stripes', 'vertical stripes', 'checkerboard', 'rings', 'mirrored blobs')


def class_names(num_classes):
    """Synset-like folder names that sort in class order: 's0000', 's0001', ..."""
    return ['s%04d' % c for c in range(num_classes)]


def class_text(c):
    return '%s, hue %d' % (TEXTURES[c % len(TEXTURES)], c // len(TEXTURES))


def _hue_rgb(c):
    hue = (c // len(TEXTURES)) * 0.381966 % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def image_shape(rng, image_size):
    """(height, width): area image_size^2 x U(0.6, 1.4), aspect w/h in U(3/4, 4/3)."""
    area = image_size * image_size * rng.uniform(0.6, 1.4)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    height = max(8, int(round(np.sqrt(area / aspect))))
    return height, max(8, int(round(height * aspect)))


def _pattern(texture, rng, height, width):
    """A field in [0, 1] of one texture; coordinates in units of the image."""
    y = (np.arange(height) + 0.5)[:, None] / height
    x = (np.arange(width) + 0.5)[None, :] / width
    cycles = rng.uniform(3, 7)
    phase = rng.uniform(0, 2 * np.pi, 2)
    if texture == 0:
        field = np.cos(2 * np.pi * cycles * y + phase[0]) + 0 * x
    elif texture == 1:
        field = np.cos(2 * np.pi * cycles * (x - 0.5)) + 0 * y  # symmetric about the middle
    elif texture == 2:
        field = np.cos(2 * np.pi * cycles * (x - 0.5)) * np.cos(2 * np.pi * cycles * y + phase[1])
    elif texture == 3:
        cy = rng.uniform(0.3, 0.7)
        field = np.cos(2 * np.pi * cycles * np.hypot(x - 0.5, (y - cy) * height / width))
    else:
        dx, cy, r = rng.uniform(0.12, 0.35), rng.uniform(0.3, 0.7), rng.uniform(0.06, 0.14)
        blobs = sum(np.exp(-((x - 0.5 - s * dx) ** 2 + (y - cy) ** 2) / (2 * r * r))
                    for s in (-1, 1))
        return np.minimum(blobs, 1.0)
    return 0.5 + 0.5 * field


def generate_image(rng, c, image_size):
    """One uint8 RGB image [h, w, 3] of class c."""
    height, width = image_shape(rng, image_size)
    field = _pattern(c % len(TEXTURES), rng, height, width)[..., None]
    foreground = np.clip(_hue_rgb(c) + rng.normal(0, 0.05, 3), 0, 1)
    background = rng.uniform(0.15, 0.85, 3)
    alpha = rng.uniform(0.35, 0.9) * field
    image = background * (1 - alpha) + foreground * alpha
    image = image + rng.normal(0, 1, image.shape) * rng.uniform(0.02, 0.08)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class JpegEncoder:
    """TensorFlow's JPEG encoder in its own graph and session (works in graph and eager mode)."""

    def __init__(self, quality=90):
        import tensorflow as tf
        v1 = tf.compat.v1
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._pixels = v1.placeholder(tf.uint8, [None, None, 3])
            self._jpeg = tf.io.encode_jpeg(self._pixels, format='rgb', quality=quality)
        self._sess = v1.Session(graph=self._graph)

    def __call__(self, image):
        return self._sess.run(self._jpeg, {self._pixels: image})

    def close(self):
        self._sess.close()


def _write_split(folder, counts, image_size, rng, encoder, tag):
    for c, name in enumerate(class_names(len(counts))):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(counts[c]):
            with open(os.path.join(folder, name, '%s_%s%d.JPEG' % (name, tag, i)), 'wb') as f:
                f.write(encoder(generate_image(rng, c, image_size)))


def per_class(total, num_classes):
    """`total` images over the classes as evenly as possible (the first classes get one more)."""
    return [total // num_classes + (c < total % num_classes) for c in range(num_classes)]


def write_tree(root, num_train, num_val, num_classes=10, image_size=64, seed=0):
    """Write the tree under `root`; returns (train dir, val dir, synset names file)."""
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    encoder = JpegEncoder()
    try:
        train, val = os.path.join(root, 'train'), os.path.join(root, 'val')
        _write_split(train, per_class(num_train, num_classes), image_size, train_rng, encoder, '')
        _write_split(val, per_class(num_val, num_classes), image_size, val_rng, encoder, 'val_')
    finally:
        encoder.close()
    names = os.path.join(root, 'synset_names.txt')
    with open(names, 'w') as f:
        for c, name in enumerate(class_names(num_classes)):
            f.write('%s\t%s\n' % (name, class_text(c)))
    return train, val, names
