"""tf.data input for ImageNet-format TFRecord shards (tensorflow/models' `build_imagenet_data.py`
format): the training stream as a function of its position, with tf_cnn_benchmarks' or
torchvision's training crop, and the evaluation pass (short side to size/0.875, centre crop).

The training stream never holds more than one shard's encoded records: epoch e visits the shards
in a permutation drawn from (seed, e) and the records of shard k in a permutation drawn from
(seed, e, k); stream position p (the global step times the batch) is one record of one epoch, so a
resumed run starts inside the right shard at the right record with nothing read in vain, and sees
the batches a run never stopped would have seen (for the same shards, i.e. the same workers). Crops
and flips are drawn from stateless seeds (seed, p). Labels are checked as records are read.
"""

import dataclasses
from typing import Sequence, Tuple

import tensorflow as tf2
import tensorflow.compat.v1 as tf

from tf_benchmarks.network import input_spec

AUTOTUNE = tf.data.experimental.AUTOTUNE
_ENDLESS = 1 << 62
LABEL_ERROR = 'label out of range'  # the first words of the stream's label assertion

# Per-channel (mean, std) in pixel units (0..255): (x - mean) / std.
NORMALIZATIONS = {
    'inception': ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),       # x / 127.5 - 1
    'torchvision': ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # ImageNet mean/std
}
CROPS = ('torchvision', 'inception')


@dataclasses.dataclass(frozen=True)
class Shard:
    path: str
    count: int


normalize = input_spec.normalize  # (image, (mean, std)) -> float32


def parse_record(serialized):
    """Serialized Example -> (JPEG bytes, int64 label, boxes float32 [1, n, 4] as ymin, xmin, ymax,
    xmax in [0, 1])."""
    boxes = {k: tf.io.VarLenFeature(tf.float32) for k in (
        'image/object/bbox/ymin', 'image/object/bbox/xmin', 'image/object/bbox/ymax',
        'image/object/bbox/xmax')}
    features = tf.io.parse_single_example(serialized, dict(boxes, **{
        'image/encoded': tf.io.FixedLenFeature([], tf.string),
        'image/class/label': tf.io.FixedLenFeature([], tf.int64)}))
    bbox = tf.stack([tf.sparse.to_dense(features[k]) for k in boxes], axis=1)
    return features['image/encoded'], features['image/class/label'], bbox[tf.newaxis]


def _resize(image, height, width):
    return tf2.image.resize(image, [height, width], method='bilinear')


def torchvision_crop(encoded, seed, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10):
    """torchvision's RandomResizedCrop (the authors' PyTorch code): up to `attempts` draws of an
    area fraction and a log-uniform aspect ratio; the first crop that fits is taken, else the
    centre crop at the clamped ratio; decoded fused with the crop, resized bilinear to size."""
    shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.float32)
    height, width = shape[0], shape[1]
    area = height * width * tf2.random.stateless_uniform([attempts], seed, scale[0], scale[1])
    log_ratio = tf2.random.stateless_uniform([attempts], seed + [0, 1], tf.math.log(ratio[0]),
                                             tf.math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    w = tf.round(tf.sqrt(area * aspect))
    h = tf.round(tf.sqrt(area / aspect))
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    u = tf2.random.stateless_uniform([attempts, 2], seed + [0, 2])
    top = tf.floor(u[:, 0] * (height - h + 1))
    left = tf.floor(u[:, 1] * (width - w + 1))
    # the fallback: the whole image, or its centre at the nearest allowed ratio
    in_ratio = width / height
    fw = tf.where(in_ratio < ratio[0], width, tf.where(in_ratio > ratio[1],
                                                       tf.round(height * ratio[1]), width))
    fh = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    first = tf.argmax(tf.cast(fits, tf.int32))
    any_fit = tf.reduce_any(fits)
    window = tf.where(any_fit, tf.stack([top[first], left[first], h[first], w[first]]),
                      tf.stack([tf.floor((height - fh) / 2), tf.floor((width - fw) / 2), fh, fw]))
    image = tf.image.decode_and_crop_jpeg(encoded, tf.cast(window, tf.int32), channels=3)
    return _resize(image, size, size)


def inception_crop(encoded, bbox, seed, size):
    """tf_cnn_benchmarks' training crop: `sample_distorted_bounding_box` (min object covered 0.1,
    aspect 0.75-1.33, area 0.05-1, 100 attempts, the whole image without boxes), fused
    decode-and-crop, bilinear resize to size (aspect not kept)."""
    begin, crop, _ = tf2.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(encoded), bbox, seed, min_object_covered=0.1,
        aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    return _resize(image, size, size)


def eval_crop(encoded, size):
    """Evaluation: the short side resized to round(size / 0.875) (256 for 224) keeping the aspect,
    then the central size x size crop."""
    image = tf.image.decode_jpeg(encoded, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    short = float(round(size / 0.875))
    scale = short / tf.minimum(shape[0], shape[1])
    new = tf.cast(tf.round(shape * scale), tf.int32)
    new = tf.maximum(new, size)
    image = _resize(image, new[0], new[1])
    top = (new[0] - size) // 2
    left = (new[1] - size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def label_error(message):
    """The label assertion's message as one line: 'label out of range: record 3 of PATH has label
    1001 outside 1 .. 1000'."""
    start = message.find(LABEL_ERROR)
    text = message[start:].splitlines()[0] if start >= 0 else message.splitlines()[0]
    for junk in ('[', ']', "b'", "'"):
        text = text.replace(junk, '')
    return ' '.join(text.split())


def _checked_label(label, label_offset, num_classes, path, index):
    """label - label_offset as int32, asserted in [0, num_classes) naming the record."""
    label = label - label_offset
    ok = tf.logical_and(label >= 0, label < num_classes)
    check = tf.debugging.Assert(ok, [LABEL_ERROR + ': record', index, 'of', path, 'has label',
                                     label + label_offset, 'outside', label_offset, '..',
                                     num_classes - 1 + label_offset], summarize=1)
    with tf.control_dependencies([check]):
        return tf.cast(tf.identity(label), tf.int32)


def _shard_records(path, count):
    """Dataset of one element: every serialized record of the shard (count of them)."""
    return tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(tf.cast(count, tf.int64))


def training_stream(shards: Sequence[Shard], start, seed=0, shuffle=True):
    """Endless (serialized record, stream position, shard path, index in the shard) from position
    `start` (an int64 tensor), one shard's records in memory at a time."""
    paths = tf.constant([s.path for s in shards])
    counts = tf.constant([s.count for s in shards], tf.int64)
    total = sum(s.count for s in shards)
    start = tf.cast(start, tf.int64)
    first_epoch = start // total
    seed = tf.constant(seed, tf.int64)

    def epoch_shards(epoch):
        order = tf.range(len(shards), dtype=tf.int64)
        if shuffle:
            order = tf2.random.experimental.stateless_shuffle(order, seed=tf.stack([seed, -1 - epoch]))
        sizes = tf.gather(counts, order)
        ends = tf.cumsum(sizes)
        begins = ends - sizes
        offset = tf.where(tf.equal(epoch, first_epoch), start - first_epoch * total,
                          tf.constant(0, tf.int64))
        skip = tf.maximum(offset - begins, 0)
        epochs = tf.fill(tf.shape(order), epoch)
        return tf.data.Dataset.from_tensor_slices((epochs, order, skip, begins)).filter(
            lambda e, k, s, b: s < tf.gather(counts, k))

    def shard_stream(epoch, k, skip, begin):
        count = tf.gather(counts, k)
        within = tf.range(count)
        if shuffle:
            within = tf2.random.experimental.stateless_shuffle(
                within, seed=tf.stack([seed, epoch * len(shards) + k]))
        within = within[skip:]
        positions = epoch * total + begin + tf.range(skip, count)
        path = tf.gather(paths, k)

        def pick(records):
            return tf.data.Dataset.from_tensor_slices((tf.gather(records, within), positions,
                                                       tf.fill(tf.shape(within), path), within))
        return _shard_records(path, count).flat_map(pick)

    epochs = tf.data.Dataset.range(first_epoch, _ENDLESS)
    return epochs.flat_map(epoch_shards).flat_map(shard_stream)


def training_batches(shards, start, batch_size, image_size, normalization, num_classes,
                     label_offset=1, crop='torchvision', augmentation=True, shuffle=True, seed=0):
    """Endless batches (float32 [B, S, S, 3] normalized, int32 [B]) from position `start`."""
    if crop not in CROPS:
        raise ValueError('crop must be one of %s, got %r' % (CROPS, crop))

    def example(serialized, position, path, index):
        encoded, label, bbox = parse_record(serialized)
        label = _checked_label(label, label_offset, num_classes, path, index)
        stateless = tf.stack([tf.constant(seed, tf.int64), position])
        if not augmentation:
            image = eval_crop(encoded, image_size)
        elif crop == 'torchvision':
            image = torchvision_crop(encoded, stateless, image_size)
        else:
            image = inception_crop(encoded, bbox, stateless, image_size)
        if augmentation:
            image = tf2.image.stateless_random_flip_left_right(image, stateless + [0, 1 << 40])
        image = tf.reshape(image, [image_size, image_size, 3])
        return normalize(image, normalization), label

    ds = training_stream(shards, start, seed, shuffle)
    ds = ds.map(example, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_batches(paths: Sequence[str], batch_size, image_size, normalization, num_classes,
                 label_offset=1) -> Tuple:
    """One pass over every record of the shards, in order; the last batch may be smaller."""
    ds = tf.data.Dataset.from_tensor_slices(list(paths)).flat_map(
        lambda p: tf.data.TFRecordDataset(p).enumerate().map(lambda i, r: (r, p, i)))

    def example(serialized, path, index):
        encoded, label, _ = parse_record(serialized)
        label = _checked_label(label, label_offset, num_classes, path, index)
        return normalize(eval_crop(encoded, image_size), normalization), label
    return ds.map(example, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
