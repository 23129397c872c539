"""The slim CIFAR-10 tfrecord format: feature names, example encoding and the file names of a split.

One `tf.train.Example` per image with `image/encoded` (PNG of the 32x32x3 RGB image), `image/format`
(b'png'), `image/class/label`, `image/height`, `image/width`. The slim converter names the files
`cifar10_train.tfrecord` / `cifar10_test.tfrecord`; the original AOFP and C-SGD code reads them renamed
to `train.tfrecords` / `validation.tfrecords`. Both conventions are accepted.
"""

import os

import numpy as np
import tensorflow as tf

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.atomic import file_digest

SPLIT_FILES = {
    'train': ('cifar10_train.tfrecord', 'train.tfrecords'),
    'test': ('cifar10_test.tfrecord', 'validation.tfrecords'),
}
LABELS_FILE = 'labels.txt'
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
               'truck')
IMAGE_KEY = 'image/encoded'
LABEL_KEY = 'image/class/label'
DATA_DIR_ENV = 'CIFAR10_DATASET_DIR'


def image_to_tfexample(png_bytes, label, height=32, width=32):
    """slim's `dataset_utils.image_to_tfexample` for one PNG-encoded image."""
    def int64(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    def byte(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: byte(png_bytes),
        'image/format': byte(b'png'),
        LABEL_KEY: int64(label),
        'image/height': int64(height),
        'image/width': int64(width),
    }))


def parse_example(serialized):
    """Graph op: serialized Example -> (uint8 image [32,32,3], int32 label)."""
    features = tf.io.parse_single_example(serialized, {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    })
    image = tf.io.decode_png(features[IMAGE_KEY], channels=3)
    image.set_shape([32, 32, 3])
    return image, tf.cast(features[LABEL_KEY], tf.int32)


def read_records(path):
    """All records of a file -> (uint8 images [N,32,32,3], int64 labels [N], list of Example protos).

    For checks and tools, not training; works in graph and eager mode alike.
    """
    examples = [tf.train.Example.FromString(r) for r in tf.compat.v1.io.tf_record_iterator(path)]
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        serialized = v1.placeholder(tf.string, [None])
        decoded = tf.map_fn(lambda s: parse_example(s)[0], serialized, fn_output_signature=tf.uint8)
        with v1.Session() as sess:
            images = sess.run(decoded, {serialized: [e.SerializeToString() for e in examples]})
    labels = [e.features.feature[LABEL_KEY].int64_list.value[0] for e in examples]
    return images, np.asarray(labels, dtype=np.int64), examples


def default_data_dir():
    return os.environ.get(DATA_DIR_ENV) or os.path.join('.', 'data', 'cifar10')


def find_split(data_dir, split):
    """Path of a split's tfrecord file in `data_dir` under either naming convention, or None; a
    directory in the place of the file is a UserError."""
    for name in SPLIT_FILES[split]:
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            raise UserError('%s is a directory, not a tfrecord file; remove it and re-create the '
                            'data with datasets/download_and_convert_cifar10.py --overwrite, or '
                            'point --data_dir / $%s at the folder that holds the records'
                            % (path, DATA_DIR_ENV))
        if os.path.exists(path):
            return path
    return None


def split_path(data_dir, split):
    """Path of a split's tfrecord file in `data_dir` under either naming convention."""
    path = find_split(data_dir, split)
    if path is not None:
        return path
    names = SPLIT_FILES[split]
    raise UserError(
        'no CIFAR-10 %s records in %s (looked for %s). Create them with\n'
        '  python datasets/download_and_convert_cifar10.py --dataset_dir %s\n'
        '(add --batches_dir DIR for extracted pickles, or --synthetic 6000 for an offline '
        'synthetic set), or point --data_dir / $%s at the folder that holds them. For '
        'ImageNet-format shards (train-00000-of-NNNNN ...), convert images with '
        'datasets/build_imagenet_data.py.'
        % (split, os.path.abspath(data_dir), ' or '.join(names), data_dir, DATA_DIR_ENV))


_COUNT_CACHE = {}
_DIGEST_CACHE = {}


def data_settings(data_dir):
    """What identifies a data set in a run record: the sha256 of its train and test records."""
    result = {}
    for split in ('train', 'test'):
        path = split_path(data_dir, split)
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGEST_CACHE:
            _DIGEST_CACHE[key] = file_digest(path)
        result['%s_records_sha256' % split] = _DIGEST_CACHE[key]
    return result


def count_records(path):
    """Number of records in a tfrecord file (cached by path, size and mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _COUNT_CACHE:
        n = 0
        try:
            for _ in tf.compat.v1.io.tf_record_iterator(path):
                n += 1
        except tf.errors.OpError as e:  # DataLossError for a damaged file, and any other
            raise UserError('%s is corrupt (%s); re-create it with '
                            'datasets/download_and_convert_cifar10.py --overwrite'
                            % (path, e.message.splitlines()[0]))
        _COUNT_CACHE[key] = n
    return _COUNT_CACHE[key]
