"""The benchmarks' training source: one fixed random batch held in memory and fed every step, so
throughput baselines measure the model alone (the Trainer's source interface: `batches` and
`initialize`). 32x32 images and 10 classes by default (CIFAR-10); `image_size` and `num_classes`
for others (sres50: 224 and 1000)."""

import numpy as np

import tensorflow.compat.v1 as tf


class InMemoryBatch:
    def __init__(self, num_examples=50000, seed=0, image_size=32, num_classes=10):
        self.num_examples = num_examples
        self.seed = seed
        self.image_size, self.num_classes = image_size, num_classes
        self.description = 'an in-memory batch' if image_size == 32 else \
            'an in-memory batch of %dx%d images' % (image_size, image_size)

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=None):
        rng = np.random.default_rng(self.seed)
        size = self.image_size
        images = rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32)
        labels = rng.integers(0, self.num_classes, batch_size).astype(np.int32)
        images = tf.Variable(images, trainable=False, name='in_memory_images',
                             collections=[tf.GraphKeys.LOCAL_VARIABLES])
        return images.read_value(), tf.constant(labels)

    def initialize(self, session, step):
        """Nothing to position: the batch is the same every step."""
