"""tf.data input for the CIFAR-10 tfrecords: the training stream (per-epoch shuffle, pad-4 crop,
flip, [-1, 1]) as a function of its position, so a resumed run sees exactly the batches a run never
stopped would have seen, and an exact single evaluation pass over a split."""

import os

import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from tf_benchmarks.data import labels as data_labels, records
from tf_benchmarks.core.errors import UserError, corrupt_record_error

AUTOTUNE = tf.data.experimental.AUTOTUNE
_ENDLESS = 1 << 62


def normalize(image):
    """uint8 [0, 255] -> float32 [-1, 1] (x / 127.5 - 1, the originals' scaling)."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def augment(image, seed):
    """Zero-pad to 40x40, random 32x32 crop, random left-right flip (the 'std' preprocessor), drawn
    from the stateless `seed` (int64 [2]) so that the same seed gives the same image."""
    image = tf.image.pad_to_bounding_box(image, 4, 4, 40, 40)
    image = tf2.image.stateless_random_crop(image, [32, 32, 3], seed)
    return tf2.image.stateless_random_flip_left_right(image, seed + [0, 1 << 40])


def decoded_records(path, cache=True):
    """Dataset of (uint8 image, int32 label) in file order; decoded images are cached in memory."""
    ds = tf.data.TFRecordDataset(path, buffer_size=8 << 20)
    ds = ds.map(records.parse_example, num_parallel_calls=AUTOTUNE)
    return ds.cache() if cache else ds


def position_dataset(images, labels, start, batch_size, augmentation=True, shuffle=True, seed=0):
    """Endless training batches as a pure function of the stream position: example number p of the
    stream is image perm_e[p mod N] of epoch e = p // N (perm_e a permutation drawn from (seed, e),
    or the file order without shuffling), augmented with the stateless seed (seed, p). A stream
    started at position `start` (a tensor: global step x batch size) therefore continues exactly
    where a stopped one left off, with no iterator state to save. drop_remainder keeps the batch
    shape static."""
    n = tf.cast(tf.shape(labels, out_type=tf.int64)[0], tf.int64)
    start = tf.cast(start, tf.int64)
    positions = tf.data.Dataset.range(start, _ENDLESS)
    if shuffle:
        first_epoch = start // n

        def epoch_order(epoch):
            return tf.data.Dataset.from_tensor_slices(tf2.random.experimental.stateless_shuffle(
                tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
        order = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch_order).skip(
            start - first_epoch * n)
    else:
        order = positions.map(lambda p: p % n)

    def example(position, index):
        image = tf.gather(images, index)
        if augmentation:
            image = augment(image, tf.stack([tf.constant(seed, tf.int64), position]))
        return normalize(image), tf.gather(labels, index)

    ds = tf.data.Dataset.zip((positions, order)).map(example, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(path, batch_size):
    """One pass over every record of the file, in order; the last batch may be smaller."""
    ds = decoded_records(path, cache=False)
    ds = ds.map(lambda image, label: (normalize(image), label), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_DECODED = {}  # the last split decoded, by (path, size, mtime): a check and the training share it


def first_image_size(path):
    """(width, height) of the first record's PNG image, or None (no record, or not a PNG: the
    decoding then names the problem)."""
    try:
        raw = next(iter(tf.io.tf_record_iterator(path)), None)
        feature = tf.train.Example.FromString(raw).features.feature[records.IMAGE_KEY] \
            if raw is not None else None
    except (tf.errors.DataLossError, ValueError):  # decoding names it
        return None
    data = feature.bytes_list.value[0] if feature and feature.bytes_list.value else b''
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def check_image_size(path):
    """A UserError unless the split's images are CIFAR-10's 32x32 (checked on the first one)."""
    size = first_image_size(path)
    if size is not None and size != (32, 32):
        raise UserError('%s holds %dx%d images; CIFAR-10 images are 32x32. Re-create the data with '
                        'datasets/download_and_convert_cifar10.py --overwrite, or point --data_dir '
                        'at CIFAR-10 tfrecords' % ((path,) + size))


def load_split(path):
    """Every image and label of a tfrecord file, decoded: (uint8 [N,32,32,3], int32 [N]); the last
    split decoded is kept (a check before the first write and the training share one decoding)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DECODED:
        check_image_size(path)
        decoded = _decode_split(path)
        _DECODED.clear()
        _DECODED[key] = decoded
    return _DECODED[key]


def check_data(data_dir):
    """Every input check of the data, before a command writes anything: the training split decodes
    (format, image size), and the test split's images are 32x32. Returns the training split's
    RecordData."""
    data = RecordData(data_dir).check()
    check_image_size(records.split_path(data_dir, 'test'))
    return data


def _decode_split(path):
    images, labels = [], []
    with tf.Graph().as_default():
        tf.set_random_seed(0)  # nothing random here, but op determinism asks every graph for one
        batch = tf.data.make_one_shot_iterator(decoded_records(path, cache=False).batch(1000))
        batch = batch.get_next()
        with tf.Session() as sess:
            while True:
                try:
                    x, y = sess.run(batch)
                except tf.errors.OutOfRangeError:
                    break
                except tf.errors.DataLossError as e:
                    raise corrupt_record_error(path, e)
                except tf.errors.InvalidArgumentError as e:
                    raise UserError('%s holds a record that is not a CIFAR-10 image (%s); re-create '
                                    'the data with datasets/download_and_convert_cifar10.py '
                                    '--overwrite' % (path, e.message.splitlines()[0]))
                images.append(x)
                labels.append(y)
    if not images:
        raise UserError('%s holds no images; re-create the data with '
                        'datasets/download_and_convert_cifar10.py --overwrite' % path)
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


class RecordData:
    """Training batches from a split's tfrecords (the normal source). The decoded split is held in
    memory and fed once per session; `initialize(session, step)` starts the stream at that step.
    Every split's labels are checked against the data set's classes when it is made."""

    def __init__(self, data_dir, split='train'):
        self.path = records.split_path(data_dir, split)
        self.num_examples = records.count_records(self.path)
        if self.num_examples == 0:
            raise UserError('%s holds no images; re-create the data with '
                            'datasets/download_and_convert_cifar10.py --overwrite' % self.path)
        data_labels.check_data_labels(data_dir)  # every split, before anything is written
        self.description = self.path
        self._decoded = None

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=0):
        self.batch_size = batch_size
        self._images = tf.placeholder(tf.uint8, [None, 32, 32, 3], name='train_images')
        self._labels = tf.placeholder(tf.int32, [None], name='train_labels')
        self._start = tf.placeholder(tf.int64, [], name='train_stream_start')
        ds = position_dataset(self._images, self._labels, self._start, batch_size, augmentation,
                              shuffle, seed)
        self._iterator = tf.data.make_initializable_iterator(ds)
        return self._iterator.get_next()

    def check(self):
        """Decode the split now (every record readable, 32x32 images), not in the first session."""
        if self._decoded is None:
            self._decoded = load_split(self.path)
        return self

    def initialize(self, session, step):
        images, labels = self.check()._decoded
        session.run(self._iterator.initializer, {self._images: images, self._labels: labels,
                                                 self._start: step * self.batch_size})
