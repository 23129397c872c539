"""Training-mode batch normalization with `tf.nn.fused_batch_norm`'s results, kept on oneDNN's fast
path when the channel count is not a multiple of 8 (DenseNet's 28, 52, ... channels, many pruned
widths), where oneDNN's training kernels run 2-10 times slower per element.

The batch statistics come from a fused BN over the same memory viewed as k times fewer rows of k*C
channels (k*C a multiple of 16), combined per channel; the normalization and the backward pass use
only inference-mode kernels in that view with per-channel values tiled k times. The function is the
same, so only float rounding differs from `tf.nn.fused_batch_norm`. At a multiple of 8 that is not
one of 16 (k = 2) the view measured no faster than the fused kernel, so it is not used there.
"""

import math
import os
import platform

import tensorflow.compat.v1 as tf

ALIGN = 16  # channels per oneDNN AVX-512 block
# Below this many elements a BN costs well under a millisecond either way, and the aligned view's
# extra ops cost more in graph optimization (about 1 s more for a dc40 training graph at batch 16)
# than they save; tests and tiny models stay on the fused kernel.
MIN_ELEMENTS = 1 << 20
# Channel counts that are multiples of this stay on the fused kernel (8: the aligned view is taken
# for k = 4, 8, 16 only; 16 also takes it at k = 2, measured no faster on an AMD EPYC).
FUSED_MULTIPLE = 8
_enabled = None


def onednn_cpu():
    """True where TensorFlow runs its CPU kernels through oneDNN and there is no GPU to run on."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        onednn = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):
        onednn = False
    return (onednn and platform.machine().lower() in ('x86_64', 'amd64')
            and not tf.config.list_physical_devices('GPU'))


def aligned_enabled():
    """Whether `batch_norm_training` takes the aligned view: on a oneDNN CPU, unless
    AOFP_CSGD_ALIGNED_BN=0."""
    global _enabled
    if _enabled is None:
        _enabled = os.environ.get('AOFP_CSGD_ALIGNED_BN', '1') != '0' and onednn_cpu()
    return _enabled


def rows_per_view(x):
    """k, the number of rows merged into one row of the aligned view, or 1 where the plain kernel is
    used (channels already a multiple of 16, or rows not divisible by k)."""
    n, h, w, channels = x.shape.as_list()
    k = ALIGN // math.gcd(channels, ALIGN)
    if k == 1 or h is None or w is None:
        return 1
    rows = h * w if n is None else n * h * w
    return k if rows % k == 0 else 1


def batch_norm_training(x, gamma, beta, epsilon, aligned=None):
    """(y, batch mean, batch variance with Bessel's correction) of an NHWC float32 `x`, as
    `tf.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)`; y is normalized
    with the biased variance. `aligned` selects the aligned view; by default it is taken on a oneDNN
    CPU (`aligned_enabled()`) for channels that are not a multiple of 8 and tensors of MIN_ELEMENTS
    or more (any size if the batch is unknown). In the aligned view the two statistics carry no
    gradient: they are for the moving averages, as the trainer uses them.
    """
    k = rows_per_view(x)
    if aligned is None:
        n, h, w, channels = x.shape.as_list()
        # bfloat16 needs whole blocks of 16: at 8 mod 16 channels oneDNN's bf16 training BN falls
        # to its reference kernel (nspc_bnorm:any, 2.6x the time of the jit kernel per element)
        multiple = ALIGN if x.dtype == tf.bfloat16 else FUSED_MULTIPLE
        aligned = (aligned_enabled() and channels % multiple != 0
                   and (n is None or n * h * w * channels >= MIN_ELEMENTS))
    if not aligned or k == 1:
        return tf.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
    return _aligned(x, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta), epsilon, k)


def _aligned(x, gamma, beta, epsilon, k):
    channels = x.shape.as_list()[-1]
    wide = k * channels

    def tiled(v):
        return tf.tile(v, [k])

    def inference(t, scale, offset, mean, variance):
        y, _, _ = tf.nn.fused_batch_norm(t, scale, offset, mean=mean, variance=variance,
                                         epsilon=epsilon, is_training=False)
        return y

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        shape = tf.shape(x)
        view = tf.reshape(x, [-1, 1, 1, wide])
        count = tf.cast(tf.size(x) // channels, tf.float32)
        # per-column statistics of the view (its normalized output is not used)
        stats = tf.raw_ops.FusedBatchNormV3(
            x=view, scale=tf.ones([wide]), offset=tf.zeros([wide]), mean=tf.zeros([0]),
            variance=tf.zeros([0]), epsilon=epsilon, is_training=True)
        part_mean = tf.reshape(stats.batch_mean, [k, channels])
        part_var = tf.reshape(stats.reserve_space_2, [k, channels])  # biased, equal counts
        mean = tf.reduce_mean(part_mean, 0)
        var = tf.reduce_mean(part_var, 0) + tf.reduce_mean(tf.square(part_mean - mean), 0)
        mean_k, var_k = tiled(mean), tiled(var)
        y = tf.reshape(inference(view, tiled(gamma), tiled(beta), mean_k, var_k), shape)

        def grad(dy, _dmean, _dvar):
            # inference-mode gradient in the view: dy*gamma/sigma and the per-column sums of dy*x^
            # and dy, summed per channel; then dx gets the batch-statistics terms
            # -gamma/(sigma*n) * (x^ * sum(dy*x^) + sum(dy)) from one more inference-mode BN.
            d = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=tf.reshape(dy, [-1, 1, 1, wide]), x=view, scale=tiled(gamma),
                reserve_space_1=mean_k, reserve_space_2=var_k, reserve_space_3=tf.zeros([0]),
                epsilon=epsilon, is_training=False)
            dgamma = tf.reduce_sum(tf.reshape(d.scale_backprop, [k, channels]), 0)
            dbeta = tf.reduce_sum(tf.reshape(d.offset_backprop, [k, channels]), 0)
            a = gamma * tf.rsqrt(var + epsilon) / count
            correction = inference(view, tiled(-a * dgamma), tiled(-a * dbeta), mean_k, var_k)
            return tf.reshape(d.x_backprop + correction, shape), dgamma, dbeta

        return (y, mean, var * (count / (count - 1.0))), grad

    return normalize(x, gamma, beta)
