"""The images `export --int8` and `--onnx` check with: a split of --data_dir as the uint8 pixels an
export takes (the evaluation's preprocessing without its normalization, which is inside the
exported model: CIFAR-10 as stored, ImageNet resized and centre-cropped as `eval` does, rounded to
uint8), with their labels."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import sources
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.network.input_spec import INCEPTION, InputSpec

BATCH = 256


def split_images(data_dir, split, input_spec, num_logits, count=None):
    """(uint8 [N, S, S, 3], int labels [N]): the first `count` images of `split` ('train' or
    'test'; all where count is None)."""
    cifar = sources.kind_of(data_dir) == sources.CIFAR10
    # CIFAR-10's source normalizes (x / 127.5 - 1, undone exactly below); ImageNet's takes any
    # mean and std, so it is asked for the pixels themselves
    spec = input_spec if cifar else InputSpec(input_spec.image_size, (0.0,) * 3, (1.0,) * 3)
    images, labels = [], []
    with tf.Graph().as_default() as graph:
        source = sources.eval_source(data_dir, split, BATCH, spec, num_logits)
        batch = tf.data.make_one_shot_iterator(source.dataset).get_next()
        with tf.Session(graph=graph, config=tf_session.session_config()) as session:
            got = 0
            while count is None or got < count:
                try:
                    x, y = session.run(batch)
                except tf.errors.OutOfRangeError:
                    break
                images.append(x)
                labels.append(y)
                got += len(x)
    if not images:
        raise UserError('the %s split of %s holds no images; export --int8 and --onnx check the '
                        'exported model on them (point --data_dir at the data the model was '
                        'trained on)' % (split, source.description))
    x = np.concatenate(images)[:count]
    if cifar:
        assert tuple(map(tuple, input_spec.normalization)) == INCEPTION
        x = (x + 1.0) * 127.5
    return (np.clip(np.round(x), 0, 255).astype(np.uint8),
            np.concatenate(labels)[:count].astype(np.int64))
