"""AOFP's multi-path masked graph (the original BDSConvNetBuilder) for chain models such as `vc`.

Base path: each target conv layer's activated output a_i is multiplied by its base mask (a [C_i]
placeholder, all ones by default) before it goes on; the loss and the logits use only this path.
With `search=True`, each target layer also has a score path that drops the filters fed in
`dropped_filters[i]` (a random half of its search space) and runs through a weight-sharing shadow of
the next layer: conv -> BN -> activation, normalized with the score path's own batch statistics (its
moving averages are not updated), or the first FC + ReLU after the last conv. The per-step metric of
layer i is the relative squared error of the next layer's activated output,
    metric_i = mean((normal_{i+1} - shadow_{i+1})^2) / mean(normal_{i+1}^2),
with normal_{i+1} layer i+1's output before its own mask (the original's choice).

The shadow conv is computed by subtraction, which is exact: pooling and flattening commute with
per-channel 0/1 masks, so the next layer's score input is x - x*d, where x is its base input and d
marks the dropped channels D, and conv(x - x*d) = conv(x) - conv(x[..., D], W[:, :, D, :]). conv(x)
is the base path's own convolution, so the shadow costs a convolution over |D| = s/2 input channels
instead of all of them. Everything runs in the training step's single forward pass; no gradient
flows through the score paths.
"""

from tf_benchmarks.convnet_builder import ConvNetBuilder
from tf_benchmarks.network_trace import Node
from tf_benchmarks.session import tf

_TINY = 1e-12


class MaskedConvNetBuilder(ConvNetBuilder):
    """ConvNetBuilder with AOFP masks on `target_layers` and, when `search`, score paths + metrics."""

    def __init__(self, images, phase_train, target_layers, search=False, **kwargs):
        super().__init__(images, phase_train, **kwargs)
        self.target_layers = frozenset(target_layers)
        self.search = search
        self.base_masks = {}       # layer -> [C] float placeholder
        self.dropped_filters = {}  # layer -> [k] int32 placeholder (search only)
        self.metrics = {}          # layer -> scalar metric (search only)
        self._pending = None       # (layer, dropped, base mask) waiting for the next layer
        self._conv_since_pending = False  # a conv was emitted since _pending was set
        self._last_conv = None     # (input, kernel, strides, mode, output) of the latest conv

    def _emit_conv(self, x, kernel, strides, mode):
        y = super()._emit_conv(x, kernel, strides, mode)
        self._last_conv = (x, kernel, strides, mode, y)
        self._conv_since_pending = True
        return y

    def _after_conv(self, index, node):
        normal = node.tensor
        if self._pending is not None:
            self._shadow_conv(index, node)
        if index not in self.target_layers:
            return node
        width = node.channels
        base = tf.placeholder_with_default(tf.ones([width]), [width], name='base_mask%d' % index)
        self.base_masks[index] = base
        if self.search:
            dropped = tf.placeholder_with_default(tf.zeros([0], tf.int32), [None],
                                                  name='dropped_filters%d' % index)
            self.dropped_filters[index] = dropped
            self._pending = (index, dropped, base)
            self._conv_since_pending = False
        return Node(normal * base, node.spec)

    def _shadow_conv(self, index, node):
        conv = self.trace.convs[index]
        x, kernel, strides, mode, y = self._last_conv
        _, dropped, _ = self._pending

        def without_dropped():
            return y - self.conv2d(tf.gather(x, dropped, axis=3), tf.gather(kernel, dropped, axis=2),
                                   strides, mode)

        shadow = tf.cond(tf.size(dropped) > 0, without_dropped, lambda: y)
        if conv.bn:
            bn = next(b for b in self.trace.bns if b.scope == conv.bn)
            shadow, _, _ = tf.nn.fused_batch_norm(
                shadow, self.variables[bn.scope + '/gamma'], self.variables[bn.scope + '/beta'],
                epsilon=bn.epsilon, is_training=True)
        self._finish_metric(node.tensor, self.activation(Node(shadow, node.spec), conv.activation))

    def _after_affine(self, index, node):
        if self._pending is not None:
            layer = self.trace.affines[index]
            x = self._affine_input
            _, dropped, base = self._pending
            score = base - tf.scatter_nd(dropped[:, None], tf.ones_like(dropped, tf.float32),
                                         tf.shape(base))
            score = tf.tile(score, [x.shape.as_list()[-1] // base.shape.as_list()[0]])
            shadow = self._emit_affine(x * score, self.variables[layer.kernel],
                                       self.variables[layer.bias])
            self._finish_metric(node.tensor, self.activation(Node(shadow, node.spec), 'relu'))
        return node

    def _emit_affine(self, x, kernel, bias):
        self._affine_input = x
        return super()._emit_affine(x, kernel, bias)

    def _finish_metric(self, normal, shadow_node):
        layer = self._pending[0]
        self._pending = None
        error = tf.reduce_mean(tf.square(normal - shadow_node.tensor))
        self.metrics[layer] = error / (tf.reduce_mean(tf.square(normal)) + _TINY)

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        if self._pending is not None and not self._conv_since_pending:
            raise ValueError('the AOFP masked graph supports chain models (each target layer '
                             'feeding one conv or the first FC), not a BN before the next conv')
        return super()._emit_batch_norm(x, gamma, beta, mean, variance, decay, epsilon)

    def _emit_concat(self, xs):
        if self._pending is not None:
            raise ValueError('the AOFP masked graph supports chain models (each target layer '
                             'feeding one conv or the first FC), not concatenations')
        return super()._emit_concat(xs)
