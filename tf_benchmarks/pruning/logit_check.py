"""How far a cut model's outputs are from the model it came from, on the same images (pure NumPy):
the largest relative logit difference, max |a - b| / max |a| over the batch (a: the reference's
logits), and the share of images whose top-1 class agrees."""

import dataclasses

import numpy as np

from tf_benchmarks.core.errors import UserError


@dataclasses.dataclass
class LogitComparison:
    images: int
    max_rel_logit_diff: float
    top1_agreement: float


def compare_logits(reference, other, what='the models'):
    """LogitComparison of two [N, classes] logit arrays of the same images; non-finite logits are
    a UserError naming `what`."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise UserError('%s give logits of different shapes (%s and %s); they are not versions '
                        'of one model' % (what, reference.shape, other.shape))
    if not (np.isfinite(reference).all() and np.isfinite(other).all()):
        raise UserError('%s give non-finite logits (their weights are too large for float32); '
                        'there is nothing to compare' % what)
    scale = max(float(np.abs(reference).max()), np.finfo(np.float32).tiny)
    return LogitComparison(
        images=int(reference.shape[0]),
        max_rel_logit_diff=float(np.abs(reference - other).max()) / scale,
        top1_agreement=float(np.mean(reference.argmax(1) == other.argmax(1))))
