"""Every cut verified: a physical (pruned or trimmed) model against the one it came from (masked or
untrimmed) on a fixed batch, the first `--verify_images` images of the test split (CIFAR-10's test
file, or the validation shards) in the evaluation preprocessing, the same batch for both. The
figures (pruning/logit_check.py) are logged beside the originals' lines and stored in results.json;
for a cut that must be exact, a difference above `--verify_tolerance` ends the run before the cut's
file is written."""

import dataclasses
import math
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import sources
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.pruning.logit_check import LogitComparison, compare_logits

DEFAULT_IMAGES = 64
DEFAULT_TOLERANCE = 1e-4
MAX_IMAGES = 1000


@dataclasses.dataclass
class CutCheck:
    """How cuts are verified: on how many images, and the tolerance of the exact ones."""
    images: int = DEFAULT_IMAGES
    tolerance: float = DEFAULT_TOLERANCE


@dataclasses.dataclass
class Version:
    """One model version to run: widths and weights, and for a masked one (AOFP's tuned file) the
    builder that takes the masks and the feed that gives them."""
    deps: Sequence[int]
    weights: Dict[str, np.ndarray]
    builder_factory: Callable = ConvNetBuilder
    feed_fn: Optional[Callable] = None


def split_name(data_dir):
    return 'test' if sources.kind_of(data_dir) == sources.CIFAR10 else 'validation'


def fixed_images(data_dir, count, input_spec=None, num_logits=None):
    """The first `count` images of the test split (fewer if it holds fewer), preprocessed as for
    evaluation."""
    with tf.Graph().as_default() as graph:
        source = sources.eval_source(data_dir, 'test', count, input_spec, num_logits)
        iterator = tf.data.make_initializable_iterator(source.dataset)
        images, _ = iterator.get_next()
        with tf.Session(graph=graph, config=tf_session.session_config()) as session:
            session.run(iterator.initializer)
            try:
                return session.run(images)
            except tf.errors.OutOfRangeError:
                raise UserError('%s holds no images to verify with' % source.description)


class CutVerifier:
    """Compares model versions on the fixed batch of `data_dir` (read once, at the first use)."""

    def __init__(self, check, model, data_dir, input_spec=None, num_logits=None):
        self.check = check
        self.model = model
        self.data_dir = data_dir
        self.input_spec = input_spec
        self.num_logits = num_logits
        self._images = None

    def images(self):
        if self._images is None:
            self._images = fixed_images(self.data_dir, self.check.images, self.input_spec,
                                        self.num_logits)
        return self._images

    def logits(self, version):
        return predict_logits(self.model, version.deps, version.weights, self.images(),
                              version.builder_factory, feed_fn=version.feed_fn,
                              num_logits=self.num_logits)

    def compare(self, reference, cut, what='the models'):
        """LogitComparison of `cut` against `reference` (Versions)."""
        return compare_logits(self.logits(reference), self.logits(cut), what)

    def line(self, comparison, cut_name, reference_name):
        """The log line, e.g. `verify: pruned vs tuned (masked) on 64 test images: ...`."""
        return describe(comparison, cut_name, reference_name, split_name(self.data_dir))

    def entry(self, comparison, enforced):
        """The stage's `verify` entry for results.json."""
        return dict(images=comparison.images, max_rel_logit_diff=comparison.max_rel_logit_diff,
                    top1_agreement=comparison.top1_agreement, enforced=bool(enforced),
                    tolerance=float(self.check.tolerance))

    def exceeded(self, comparison):
        return comparison.max_rel_logit_diff > self.check.tolerance

    def figures(self, comparison):
        """The figures as an error names them."""
        return ('max relative logit difference %.3g > --verify_tolerance %g (top-1 agreement '
                '%.1f%%) on %d %s images' % (comparison.max_rel_logit_diff, self.check.tolerance,
                                              100 * comparison.top1_agreement, comparison.images,
                                              split_name(self.data_dir)))


def describe(comparison: LogitComparison, cut_name, reference_name, split='test'):
    return ('verify: %s vs %s on %d %s images: max relative logit difference %.3g, top-1 '
            'agreement %.1f%%' % (cut_name, reference_name, comparison.images, split,
                                  comparison.max_rel_logit_diff, 100 * comparison.top1_agreement))


def check_settings(images, tolerance):
    """A CutCheck from the flags' values: 1..MAX_IMAGES images, a finite tolerance >= 0."""
    if not 1 <= images <= MAX_IMAGES:
        raise UserError('--verify_images must be between 1 and %d, got %d' % (MAX_IMAGES, images))
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise UserError('--verify_tolerance must not be negative (a finite number), got %g'
                        % tolerance)
    return CutCheck(images, tolerance)
