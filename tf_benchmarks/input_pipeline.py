"""tf.data input for the CIFAR-10 tfrecords: training stream (shuffle, pad-4 crop, flip, [-1, 1])
and an exact single evaluation pass over a split."""

import tensorflow.compat.v1 as tf

from tf_benchmarks import records

AUTOTUNE = tf.data.experimental.AUTOTUNE


def normalize(image):
    """uint8 [0, 255] -> float32 [-1, 1] (x / 127.5 - 1, the originals' scaling)."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def augment(image):
    """Zero-pad to 40x40, random 32x32 crop, random left-right flip (the 'std' preprocessor)."""
    image = tf.image.pad_to_bounding_box(image, 4, 4, 40, 40)
    image = tf.image.random_crop(image, [32, 32, 3])
    return tf.image.random_flip_left_right(image)


def decoded_records(path, cache=True):
    """Dataset of (uint8 image, int32 label) in file order; decoded images are cached in memory."""
    ds = tf.data.TFRecordDataset(path, buffer_size=8 << 20)
    ds = ds.map(records.parse_example, num_parallel_calls=AUTOTUNE)
    return ds.cache() if cache else ds


def train_dataset(path, batch_size, augmentation=True, shuffle=True, shuffle_buffer=10000,
                  seed=None):
    """Endless training batches (drop_remainder, so the batch shape is static)."""
    ds = decoded_records(path)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()

    def preprocess(image, label):
        if augmentation:
            image = augment(image)
        return normalize(image), label

    ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(AUTOTUNE)


def eval_dataset(path, batch_size):
    """One pass over every record of the file, in order; the last batch may be smaller."""
    ds = decoded_records(path, cache=False)
    ds = ds.map(lambda image, label: (normalize(image), label), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


class RecordData:
    """Training batches from a split's tfrecords (the normal source)."""

    def __init__(self, data_dir, split='train'):
        self.path = records.split_path(data_dir, split)
        self.num_examples = records.count_records(self.path)
        self.description = self.path

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=None):
        ds = train_dataset(self.path, batch_size, augmentation, shuffle, seed=seed)
        return tf.data.make_one_shot_iterator(ds).get_next()


class InMemoryBatch:
    """One fixed random batch held in memory and fed every step: throughput baselines only."""

    def __init__(self, num_examples=50000, seed=0):
        self.num_examples = num_examples
        self.seed = seed
        self.description = 'an in-memory batch'

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=None):
        import numpy as np
        rng = np.random.default_rng(self.seed)
        images = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32)
        labels = rng.integers(0, 10, batch_size).astype(np.int32)
        images = tf.Variable(images, trainable=False, name='in_memory_images',
                             collections=[tf.GraphKeys.LOCAL_VARIABLES])
        return images.read_value(), tf.constant(labels)
