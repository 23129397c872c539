"""The ImageNet-format input pipeline on tiny shards made here: the training stream visits every
record once per epoch in a fresh order, one shard at a time, and a stream started at any position
continues exactly as one never stopped; the crops against their definitions; labels checked."""

import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from tf_benchmarks.data import imagenet_pipeline as ip

COUNTS = (5, 3, 4)


def _example(jpeg, label, boxes=()):
    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))
    feature = {'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
               'image/class/label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    for i, key in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
        feature['image/object/bbox/' + key] = floats([b[i] for b in boxes])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _jpegs(sizes, seed=0):
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default(), tf.Session() as sess:
        image = tf.placeholder(tf.uint8, [None, None, 3])
        encode = tf.image.encode_jpeg(image, quality=95)
        return [sess.run(encode, {image: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)})
                for h, w in sizes]


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp('shards')
    rng = np.random.default_rng(1)
    sizes = [(int(rng.integers(40, 90)), int(rng.integers(40, 90))) for _ in range(sum(COUNTS))]
    jpegs = iter(_jpegs(sizes))
    out = []
    for k, count in enumerate(COUNTS):
        path = str(folder / ('train-%05d-of-%05d' % (k, len(COUNTS))))
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(count):
                boxes = [(0.1, 0.2, 0.9, 0.8)] if i % 2 else []
                writer.write(_example(next(jpegs), 1 + (k + i) % 3, boxes))
        out.append(ip.Shard(path, count))
    return out


def _take(ds, n):
    with tf.Session() as sess:
        nxt = tf.data.make_one_shot_iterator(ds).get_next()
        return [sess.run(nxt) for _ in range(n)]


def test_the_stream_visits_every_record_once_per_epoch_and_resumes_exactly(shards):
    total = sum(COUNTS)
    with tf.Graph().as_default():
        full = _take(ip.training_stream(shards, 0, seed=3), 3 * total)
    positions = [int(r[1]) for r in full]
    assert positions == list(range(3 * total))
    epochs = [sorted((r[2], int(r[3])) for r in full[e * total:(e + 1) * total])
              for e in range(3)]
    everything = sorted((s.path.encode(), i) for s in shards for i in range(s.count))
    assert epochs[0] == epochs[1] == epochs[2] == everything
    orders = [[(r[2], int(r[3])) for r in full[e * total:(e + 1) * total]] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]
    # records of one shard come together: one shard in memory at a time
    runs = [r[2] for r in full[:total]]
    assert sum(1 for a, b in zip(runs, runs[1:]) if a != b) == len(COUNTS) - 1
    for start in (1, 6, total, total + 7, 2 * total + 11):
        with tf.Graph().as_default():
            resumed = _take(ip.training_stream(shards, tf.constant(start, tf.int64), seed=3),
                            3 * total - start)
        assert [(r[0], int(r[1])) for r in resumed] == [(r[0], int(r[1])) for r in full[start:]]
    with tf.Graph().as_default():
        other = _take(ip.training_stream(shards, 0, seed=4), total)
    assert [r[3] for r in other] != [r[3] for r in full[:total]]


def test_batches_resume_exactly_with_both_crops(shards):
    for crop in ip.CROPS:
        with tf.Graph().as_default():
            batches = _take(ip.training_batches(shards, 0, 4, 32, ip.NORMALIZATIONS['inception'],
                                                3, crop=crop, seed=5), 5)
        with tf.Graph().as_default():
            resumed = _take(ip.training_batches(shards, 8, 4, 32, ip.NORMALIZATIONS['inception'],
                                                3, crop=crop, seed=5), 3)
        for (x, y), (rx, ry) in zip(batches[2:], resumed):
            np.testing.assert_array_equal(x, rx)
            np.testing.assert_array_equal(y, ry)
        x, y = batches[0]
        assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
        assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
        assert set(np.concatenate([b[1] for b in batches])) <= {0, 1, 2}


def test_torchvision_crop_is_random_resized_crop():
    """The crop window equals torchvision's algorithm run in NumPy on the same draws (the same
    window decoded and resized gives the same pixels)."""
    jpeg = _jpegs([(60, 100)], seed=2)[0]
    windows = set()
    with tf.Graph().as_default(), tf.Session() as sess:
        for s in range(6):
            seed = tf.constant([7, s], tf.int64)
            area = sess.run(tf.random.stateless_uniform([10], seed, 0.08, 1.0))
            logr = sess.run(tf.random.stateless_uniform([10], seed + [0, 1], np.log(3 / 4),
                                                        np.log(4 / 3)))
            u = sess.run(tf.random.stateless_uniform([10, 2], seed + [0, 2]))
            for i in range(10):
                a, r = area[i] * 6000, np.exp(logr[i])
                w, h = round(np.sqrt(a * r)), round(np.sqrt(a / r))
                if 0 < w <= 100 and 0 < h <= 60:
                    top, left = int(u[i, 0] * (60 - h + 1)), int(u[i, 1] * (100 - w + 1))
                    break
            else:
                h, w, top, left = 60, 80, 0, 10
            ours = sess.run(ip.torchvision_crop(jpeg, seed, 24))
            window = tf.image.decode_and_crop_jpeg(jpeg, [top, left, h, w], channels=3)
            reference = sess.run(tf2.image.resize(window, [24, 24]))
            np.testing.assert_allclose(ours, reference, atol=1e-3)
            windows.add((top, left, h, w))
    assert len(windows) == 6


def test_eval_crop_keeps_the_aspect_and_takes_the_centre():
    jpeg = _jpegs([(64, 96)], seed=3)[0]
    with tf.Graph().as_default(), tf.Session() as sess:
        decoded = sess.run(tf.image.decode_jpeg(jpeg, channels=3)).astype(np.float32)
        out = sess.run(ip.eval_crop(jpeg, 56))  # short side 64 = round(56 / 0.875): no resize
    np.testing.assert_allclose(out, decoded[4:60, 20:76], atol=1e-4)


def test_labels_out_of_range_name_the_shard_and_the_record(shards):
    with tf.Graph().as_default():
        ds = ip.eval_batches([s.path for s in shards], 4, 16, ip.NORMALIZATIONS['inception'], 2)
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            _take(ds, 3)
    message = error.value.message
    assert ip.LABEL_ERROR in message and 'train-00000-of-00003' in message
    assert 'has label] [3]' in message or 'has label 3' in message.replace('] [', ' ')
