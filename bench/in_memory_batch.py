"""The benchmarks' training source: one fixed random batch held in memory and fed every step, so
throughput baselines measure the model alone (the Trainer's source interface: `batches` and
`initialize`)."""

import numpy as np

import tensorflow.compat.v1 as tf


class InMemoryBatch:
    def __init__(self, num_examples=50000, seed=0):
        self.num_examples = num_examples
        self.seed = seed
        self.description = 'an in-memory batch'

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=None):
        rng = np.random.default_rng(self.seed)
        images = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32)
        labels = rng.integers(0, 10, batch_size).astype(np.int32)
        images = tf.Variable(images, trainable=False, name='in_memory_images',
                             collections=[tf.GraphKeys.LOCAL_VARIABLES])
        return images.read_value(), tf.constant(labels)

    def initialize(self, session, step):
        """Nothing to position: the batch is the same every step."""
