"""Evaluation: top-1, top-5 and mean loss over one exact pass of a split (CIFAR-10's test file or
the validation shards of an ImageNet-format set), with BN in inference mode; a non-finite loss
(outputs that overflow) is an error, not a result."""

import dataclasses
import math

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError, corrupt_record_error
from tf_benchmarks.data import imagenet_pipeline, sources
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.engine.weights import key_variables, load_weights
from tf_benchmarks.network.convnet_builder import ConvNetBuilder


@dataclasses.dataclass
class EvalResult:
    top1: float
    top5: float
    loss: float
    num_examples: int


def _check_finite_loss(loss, source, path):
    if not math.isfinite(loss):
        raise UserError('%s gives a loss of %s on %s: the model\'s outputs are not finite '
                        'numbers (its weights are too large for float32), so it has no result. '
                        'Pass weights of a model that trained normally' % (source, loss, path))


class Evaluator:
    """An inference graph of `model` at widths `deps` over a split; `evaluate(weights)` runs a pass.

    Building once and evaluating several weight sets (same widths) avoids rebuilding the graph.
    `builder_factory(images, phase_train)` may return a masked builder (AOFP). `input_spec` is the
    weights' input (image size, normalization; None: the model's default).
    """

    def __init__(self, model, deps, data_dir, batch_size=500, split='test',
                 builder_factory=ConvNetBuilder, intra_threads=0, inter_threads=0,
                 input_spec=None):
        self.model = model
        self.deps = model.check_deps(deps)
        self.num_logits = sources.logits(data_dir, model)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(0)  # initializers are overwritten; op determinism wants a seed
            source = sources.eval_source(data_dir, split, batch_size, input_spec, self.num_logits)
            self.path = source.description
            self.iterator = tf.data.make_initializable_iterator(source.dataset)
            images, labels = self.iterator.get_next()
            self.builder = builder_factory(images, phase_train=False)
            logits = model.build(self.builder, self.deps, self.num_logits).tensor
            self.logits = logits
            self.fetches = {
                'top1': tf.reduce_sum(tf.cast(tf.nn.in_top_k(logits, labels, 1), tf.int64)),
                'top5': tf.reduce_sum(tf.cast(tf.nn.in_top_k(logits, labels, 5), tf.int64)),
                'loss': tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=logits)),
                'count': tf.size(labels),
            }
            self.variables = key_variables(self.builder.trace)
        self.session = tf.Session(graph=self.graph, config=tf_session.session_config(
            intra_threads, inter_threads))

    def load(self, weights, source='weights'):
        """Assign weights (name -> array); every variable must be present with its shape."""
        return load_weights(self.session, self.variables, weights, source)

    def evaluate(self, weights=None, source='weights', feed_dict=None):
        """One exact pass; `weights` (name -> array) are loaded first if given."""
        if weights is not None:
            self.load(weights, source)
        self.session.run(self.iterator.initializer)
        totals = {'top1': 0, 'top5': 0, 'loss': 0.0, 'count': 0}
        while True:
            try:
                values = self.session.run(self.fetches, feed_dict=feed_dict)
            except tf.errors.OutOfRangeError:
                break
            except tf.errors.DataLossError as e:
                raise corrupt_record_error(self.path, e)
            except tf.errors.InvalidArgumentError as e:
                if imagenet_pipeline.LABEL_ERROR not in e.message:
                    raise
                raise UserError('%s; the model has %d logits'
                                % (imagenet_pipeline.label_error(e.message), self.num_logits))
            for key in totals:
                totals[key] += values[key]
        n = totals['count']
        if n == 0:
            raise UserError('%s holds no images' % self.path)
        _check_finite_loss(totals['loss'], source, self.path)
        return EvalResult(totals['top1'] / n, totals['top5'] / n, totals['loss'] / n, int(n))

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def evaluate_file(model, weight_file, data_dir, batch_size=500, source='weights',
                  feed_fn=None, **kwargs):
    """Evaluate a WeightFile at its own deps (the model's widths if it has none).

    `feed_fn(builder) -> feed_dict` feeds extra placeholders (AOFP's masks); other keyword arguments
    go to the Evaluator (e.g. `builder_factory`).
    """
    deps = model.file_deps(weight_file)
    kwargs.setdefault('input_spec', weight_file.input_spec)
    with Evaluator(model, deps, data_dir, batch_size, **kwargs) as evaluator:
        feed = feed_fn(evaluator.builder) if feed_fn else None
        return evaluator.evaluate(weight_file.weights, source, feed)


def predict_logits(model, deps, weights, images, builder_factory=ConvNetBuilder, feed_dict=None,
                   feed_fn=None, num_logits=None, chunk=100):
    """Inference-mode logits of `images` (float [N,H,W,3], preprocessed) for exactness checks, run
    `chunk` images at a time; `feed_fn(builder) -> feed_dict` feeds extra placeholders (AOFP's
    masks); `num_logits`: the classifier's width (default: the model's)."""
    deps = model.check_deps(deps)
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(0)
        inputs = tf.placeholder(tf.float32, [None] + list(images.shape[1:]))
        builder = builder_factory(inputs, phase_train=False)
        logits = model.build(builder, deps, num_logits).tensor
        variables = key_variables(builder.trace)
        with tf.Session(graph=graph, config=tf_session.session_config()) as sess:
            load_weights(sess, variables, weights, 'weights')
            feed = dict(feed_dict or {})
            feed.update(feed_fn(builder) if feed_fn else {})
            out = []
            for start in range(0, len(images), chunk):
                feed[inputs] = images[start:start + chunk]
                out.append(sess.run(logits, feed))
            return np.concatenate(out)
