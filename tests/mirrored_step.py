"""Run by tests/test_replicas.py in a fresh process (logical CPU devices must exist before TensorFlow
starts): one MirroredStrategy training step on two logical CPU devices (on two GPUs where there
are two or more; with one GPU, on the CPU's), against the single-device update computed here from
the two half-batch gradients. Prints one JSON line of relative errors
against three references: the mean of the half-batch gradients transformed once (the right one),
their sum, and the transforms applied to each half and then added; errors are relative to the
size of the reference update (and, for `mean_of_weights`, to the updated weights). Cases: plain,
csgd, and fp16 (plain with float16 convolutions and a loss scale of 2**10, in the references too,
on a wider vc: the trainer must unscale its gradients once, on the mean)."""

import json
import sys
import tempfile

import numpy as np

from helpers import random_weights
from tf_benchmarks.engine.session import graph_mode

graph_mode()

import tensorflow.compat.v1 as tf  # noqa: E402

from tf_benchmarks.engine import replicas  # noqa: E402

import tensorflow as tf2  # noqa: E402
if len(tf2.config.list_physical_devices('GPU')) == 1:  # two devices needed: the CPU's, then
    tf2.config.set_visible_devices([], 'GPU')
replicas.configure('mirrored', 2)

from csgd.centripetal import CentripetalHandler, centripetal_gradient  # noqa: E402
from tf_benchmarks.network.convnet_builder import ConvNetBuilder  # noqa: E402
from tf_benchmarks.models.registry import get_model  # noqa: E402
from tf_benchmarks.engine.loss_scale import LossScaleRule  # noqa: E402
from tf_benchmarks.engine.train_config import TrainConfig  # noqa: E402
from tf_benchmarks.engine.method import MethodBundle  # noqa: E402
from tf_benchmarks.engine.trainer import Trainer  # noqa: E402
from tf_benchmarks.engine.weights import key_variables, load_weights  # noqa: E402

MODEL, DEPS, LR, MOMENTUM, WD, STRENGTH = get_model('vc'), [4] * 13, 0.02, 0.9, 0.05, 0.5
# fp16: a loss scale, and wider layers: at 4 filters a layer this fp16 step and its fp16 reference
# differed by up to 15% of the update (fp32: 1.5e-5), at 16 by 6e-7
FP16_SCALE, FP16_DEPS = 2.0 ** 10, [16] * 13
CLUSTERS = {0: [[0, 1], [2], [3]], 3: [[0, 2, 3], [1]]}


class FixedBatch:
    """The Trainer's data-source interface over one fixed batch."""
    description = 'a fixed batch'

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.num_examples = len(labels)

    def batches(self, batch_size, augmentation, shuffle, seed):
        return tf.constant(self.images), tf.constant(self.labels)

    def initialize(self, session, step):
        pass


def half_batch_values(weights, images, labels, deps, conv_dtype=tf.float32, loss_scale=1.0):
    """Per half of the batch, on one device: the gradient of its mean loss for every trainable
    variable (of the loss times `loss_scale`, divided by it) and its BN batch statistics, with
    convolutions in `conv_dtype`."""
    out = []
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 32, 32, 3])
        y = tf.placeholder(tf.int32, [None])
        builder = ConvNetBuilder(x, phase_train=True, moving_average_updates=False,
                                 conv_dtype=conv_dtype)
        logits = MODEL.build(builder, deps).tensor
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        trainable = {v.op.name: v for v in tf.trainable_variables()}
        grads = dict(zip(trainable, [g / loss_scale for g in tf.gradients(
            loss * loss_scale, list(trainable.values()))]))
        stats = {v.op.name: value for v, value, _ in builder.batch_statistics}
        with tf.Session() as sess:
            load_weights(sess, key_variables(builder.trace), weights, 'weights')
            half = len(labels) // 2
            for part in (slice(0, half), slice(half, None)):
                out.append(sess.run((grads, stats), {x: images[part], y: labels[part]}))
    return out, builder.trace


def transform(grads, weights, trace, csgd):
    """The trainer's gradient transforms in NumPy: L2 on kernels (plain) or C-SGD's rule (merge
    and decay on the clustered conv kernels and their BN vectors), and bias/beta doubling."""
    out = {}
    bn_of_layer = {conv.index: conv.bn for conv in trace.convs}
    for name, g in grads.items():
        w = weights[name]
        if any(k in name for k in ('bias', 'beta')):
            g = 2.0 * g
        if not csgd and len(w.shape) in (2, 4):
            g = g + WD * w
        out[name] = g
    if csgd:
        for conv in trace.convs:
            clusters = CLUSTERS.get(conv.index, [[c] for c in range(conv.out_channels)])
            n = conv.out_channels
            for name, decay, strength in ((conv.kernel, WD, STRENGTH),
                                          (bn_of_layer[conv.index] + '/gamma', 0.0, STRENGTH),
                                          (bn_of_layer[conv.index] + '/beta', 0.0, STRENGTH)):
                if decay == 0.0 and conv.index not in CLUSTERS:
                    continue
                rows = lambda a: a.reshape(-1, n).T  # noqa: E731  (filters as rows)
                g = centripetal_gradient(rows(out[name]), rows(weights[name]), clusters, decay,
                                         strength)
                out[name] = g.T.reshape(weights[name].shape)
    return out


def updated(weights, grads, stats, decay=0.9):
    """Nesterov momentum from a zero accumulator, and the BN moving averages."""
    new = dict(weights)
    for name, g in grads.items():
        new[name] = weights[name] - LR * (g + MOMENTUM * g)
    for name, value in stats.items():
        new[name] = weights[name] - (weights[name] - value) * (1 - decay)
    return new


def relative_error(result, reference, start):
    """Largest, over the variables, of |result - reference| / |reference - start| (norms)."""
    worst = 0.0
    for name, ref in reference.items():
        step = np.linalg.norm(ref - start[name])
        if step > 0:
            worst = max(worst, float(np.linalg.norm(result[name] - ref) / step))
    return worst


def main(csgd, precision='fp32'):
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    fp16 = precision == 'fp16'
    deps = FP16_DEPS if fp16 else DEPS
    trace = MODEL.trace(deps)
    weights = random_weights(trace, 5)
    halves, trace = half_batch_values(weights, images, labels, deps,
                                      tf.float16 if fp16 else tf.float32,
                                      FP16_SCALE if fp16 else 1.0)
    handler = None
    if csgd:
        bn = {b.index: [[c] for c in range(b.channels)] for b in trace.bns}
        for conv in trace.convs:
            if conv.index in CLUSTERS:
                bn[next(b.index for b in trace.bns if b.scope == conv.bn)] = CLUSTERS[conv.index]
        layers = {c.index: CLUSTERS.get(c.index, [[i] for i in range(c.out_channels)])
                  for c in trace.convs}
        handler = CentripetalHandler(trace, layers, bn, WD, STRENGTH)
    config = TrainConfig(num_steps=1, batch_size=8, lr_values=(LR,), momentum=MOMENTUM,
                         weight_decay=0.0 if csgd else WD, augmentation=False, shuffle=False,
                         display_every=1, summary_every=0, checkpoint_every=0,
                         precision=precision, loss_scale=LossScaleRule(initial=FP16_SCALE))
    with tempfile.TemporaryDirectory() as train_dir:
        result = Trainer(MODEL, deps, FixedBatch(images, labels), config, train_dir,
                         init_weights=weights, method=MethodBundle(grad_handler=handler), log=lambda m: None).run()
    (ga, sa), (gb, sb) = halves
    stats = {n: (sa[n] + sb[n]) / 2 for n in sa}
    mean = transform({n: (ga[n] + gb[n]) / 2 for n in ga}, weights, trace, csgd)
    summed = transform({n: ga[n] + gb[n] for n in ga}, weights, trace, csgd)
    ta, tb = transform(ga, weights, trace, csgd), transform(gb, weights, trace, csgd)
    per_replica = {n: ta[n] + tb[n] for n in ta}
    errors = {name: relative_error(result.weights, updated(weights, grads, stats), weights)
              for name, grads in (('mean', mean), ('sum', summed), ('per_replica', per_replica))}
    reference = updated(weights, mean, stats)
    errors['mean_of_weights'] = max(float(np.linalg.norm(result.weights[n] - w) / np.linalg.norm(w))
                                    for n, w in reference.items())
    return errors


if __name__ == '__main__':
    print('RESULT ' + json.dumps({case: main(case == 'csgd', 'fp16' if case == 'fp16' else 'fp32')
                                  for case in sys.argv[1:]}))
