"""TensorFlow ConvNetBuilder: the `NetworkBuilder` calls emitted as `tf.compat.v1` graph ops
(`get_variable`, `tf.nn.conv2d`, fused batch norm, pooling, `xw_plus_b`), NHWC, no Keras."""

import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

from tf_benchmarks.network.batch_norm import batch_norm_training
from tf_benchmarks.network.builder import NetworkBuilder

_INITIALIZERS = {
    'glorot_uniform': lambda: tf.glorot_uniform_initializer(),
    # N(0, sqrt(2 / (k_h * k_w * C_out))), the DenseNet/C-SGD conv initializer.
    'he_normal_fan_out': lambda: tf.variance_scaling_initializer(
        scale=2.0, mode='fan_out', distribution='untruncated_normal'),
    'zeros': lambda: tf.zeros_initializer(),
    'ones': lambda: tf.ones_initializer(),
}


def activate(x, activation):
    """One of builder.ACTIVATIONS (or None / 'linear', the identity) as tf.nn ops."""
    if activation in (None, 'linear'):
        return x
    if activation == 'relu':
        return tf.nn.relu(x)
    if activation == 'relu6':
        return tf.nn.relu6(x)
    if activation == 'sigmoid':
        return tf.nn.sigmoid(x)
    if activation == 'tanh':
        return tf.nn.tanh(x)
    if activation == 'swish':
        return tf.nn.silu(x)
    if activation == 'hard_sigmoid':
        return tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0)
    if activation == 'hard_swish':
        return x * tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0)
    raise ValueError('unsupported activation %r' % (activation,))


def variable_name(var):
    """A variable's name without ':0' ('conv0/kernel'), the same for every copy a tf.distribute
    strategy makes of it."""
    return var.name.rsplit(':', 1)[0]


class ConvNetBuilder(NetworkBuilder):
    """Builds the graph of a model's builder calls; `phase_train` selects batch/moving statistics.

    In training mode each BN adds its two moving-average assigns (decay `bn_decay`,
    zero_debias=False) to `self.update_ops` (also to the UPDATE_OPS collection); with
    `moving_average_updates=False` it only lists (moving variable, batch value, decay) in
    `self.batch_statistics`, for a trainer that averages them over replicas first. With
    `conv_dtype=tf.bfloat16` the convolutions compute in bfloat16 (inputs and kernels cast, outputs
    cast back); variables, activations, BN, pooling, FC layers and logits stay float32. With
    `activation_dtype=tf.bfloat16` too, the convolutions' outputs stay bfloat16, so BN (float32
    scale, offset and statistics), activations, pooling, concatenations and residual additions run
    in bfloat16 up to the global pooling or flattening, which return float32; variables, FC layers
    and logits stay float32. Training-mode BN goes through `batch_norm.batch_norm_training`
    (oneDNN's fast path for any channel count, in either type).
    """

    def __init__(self, images, phase_train, bn_decay=0.9, bn_epsilon=1e-3, conv_dtype=tf.float32,
                 moving_average_updates=True, activation_dtype=tf.float32):
        if activation_dtype not in (tf.float32, conv_dtype):
            raise ValueError('activation_dtype %s needs conv_dtype %s' % (activation_dtype.name,
                                                                          activation_dtype.name))
        shape = images.shape.as_list()[1:]
        super().__init__(images, tuple(shape), phase_train, bn_decay, bn_epsilon)
        self.conv_dtype = conv_dtype
        self.activation_dtype = activation_dtype
        self.moving_average_updates = moving_average_updates
        self.update_ops = []
        self.batch_statistics = []
        self.variables = {}  # full name -> tf.Variable, for layers that reuse them

    def _emit_scope(self, name, reuse):
        return tf.variable_scope(name, reuse=reuse)

    def _emit_variable(self, name, full_name, shape, initializer, trainable):
        var = tf.get_variable(name, shape, tf.float32, initializer=_INITIALIZERS[initializer](),
                              trainable=trainable)
        if variable_name(var) != full_name:
            raise ValueError('variable %s was created as %s: build the model inside the builder\'s '
                             'own variable_scope calls' % (full_name, variable_name(var)))
        self.variables[full_name] = var
        return var

    def _emit_conv(self, x, kernel, strides, mode):
        return self.conv2d(x, kernel, strides, mode)

    def conv2d(self, x, kernel, strides, mode):
        """NHWC convolution in `conv_dtype`, out in `activation_dtype`. SAME_RESNET
        (tf_cnn_benchmarks' mode): with a stride, pad (k-1)//2 before and the rest after on both
        axes, then VALID."""
        x, mode = _resnet_padding(x, kernel, strides, mode)
        if self.conv_dtype == tf.float32:
            return tf.nn.conv2d(x, kernel, [1, strides[0], strides[1], 1], mode)
        y = tf.nn.conv2d(tf.cast(x, self.conv_dtype), tf.cast(kernel, self.conv_dtype),
                         [1, strides[0], strides[1], 1], mode)
        return tf.cast(y, self.activation_dtype)

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        if self.phase_train:
            y, batch_mean, batch_var = batch_norm_training(x, gamma, beta, epsilon)
            for var, value in ((mean, batch_mean), (variance, batch_var)):
                self.batch_statistics.append((var, value, decay))
                if not self.moving_average_updates:
                    continue
                op = moving_averages.assign_moving_average(var, value, decay, zero_debias=False)
                self.update_ops.append(op)
                tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, op)
            return y
        y, _, _ = tf.nn.fused_batch_norm(x, gamma, beta, mean=mean, variance=variance,
                                         epsilon=epsilon, is_training=False)
        return y

    def _emit_bias(self, x, bias):
        return tf.nn.bias_add(x, tf.cast(bias, x.dtype))

    def _emit_depthwise(self, x, kernel, strides, mode):
        """tf.nn.depthwise_conv2d in the input's type; SAME_RESNET as in conv2d."""
        x, mode = _resnet_padding(x, kernel, strides, mode)
        return tf.nn.depthwise_conv2d(x, tf.cast(kernel, x.dtype), [1, strides[0], strides[1], 1],
                                      mode)

    def _emit_pad(self, x, paddings):
        return tf.pad(x, [[0, 0], list(paddings[0]), list(paddings[1]), [0, 0]])

    def _emit_relu(self, x):
        return tf.nn.relu(x)

    def _emit_activation(self, x, activation):
        return activate(x, activation)

    def _emit_pool(self, kind, x, ksize, strides, mode):
        """SAME_RESNET: PyTorch's symmetric padding, (k-1)//2 before and k//2 after (with -inf for
        a max-pool, zeros for an average, which counts them), then VALID."""
        pool = tf.nn.max_pool if kind == 'max' else tf.nn.avg_pool
        if mode == 'SAME_RESNET':
            k_h, k_w = ksize
            x = tf.pad(x, [[0, 0], [(k_h - 1) // 2, k_h // 2], [(k_w - 1) // 2, k_w // 2], [0, 0]],
                       constant_values=float('-inf') if kind == 'max' else 0.0)
            mode = 'VALID'
        return pool(x, [1, ksize[0], ksize[1], 1], [1, strides[0], strides[1], 1], mode)

    def _activations(self, xs):
        """xs in one type: `activation_dtype` where any of them has it (the input image does not)."""
        if self.activation_dtype == tf.float32 or all(x.dtype == tf.float32 for x in xs):
            return xs
        return [tf.cast(x, self.activation_dtype) for x in xs]

    def _emit_concat(self, xs):
        return tf.concat(self._activations(xs), axis=3)

    def _emit_add(self, xs):
        return tf.add_n(self._activations(xs))

    def _emit_spatial_mean(self, x):
        return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2])

    def _emit_flatten(self, x, size):
        return tf.reshape(tf.cast(x, tf.float32), [-1, size])

    def _emit_affine(self, x, kernel, bias):
        return tf.nn.xw_plus_b(x, kernel, bias)


def _resnet_padding(x, kernel, strides, mode):
    """(x, mode) for a convolution in `mode`: SAME_RESNET (tf_cnn_benchmarks' mode) is SAME without
    a stride, and with one an explicit pad of (k-1)//2 before and the rest after on both axes,
    then VALID; other modes pass through."""
    if mode != 'SAME_RESNET':
        return x, mode
    if strides == (1, 1):
        return x, 'SAME'
    k_h, k_w = kernel.shape.as_list()[:2]
    return tf.pad(x, [[0, 0], [(k_h - 1) // 2, k_h // 2], [(k_w - 1) // 2, k_w // 2],
                      [0, 0]]), 'VALID'
