"""AOFP's multi-path masked graph (the original BDSConvNetBuilder) for chain models such as `vc`.

Base path: each target conv layer's activated output a_i is multiplied by its base mask (a [C_i]
placeholder, all ones by default) before it goes on; the loss and the logits use only this path.
With `search=True`, each target layer also gets a score path a_i * score_mask_i, pooled and flattened
like the base path, through a weight-sharing shadow of the next layer: conv -> BN -> activation,
normalized with the score path's own batch statistics (its moving averages are not updated), or the
first FC + ReLU after the last conv. The per-step metric of layer i is the relative squared error
of the next layer's activated output,
    metric_i = mean((normal_{i+1} - shadow_{i+1})^2) / mean(normal_{i+1}^2),
with normal_{i+1} layer i+1's output before its own mask (the original's choice). All of it runs in
the training step's single forward pass; no gradient flows through the score paths.
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
        self.base_masks = {}   # layer -> [C] placeholder
        self.score_masks = {}  # layer -> [C] placeholder (search only)
        self.metrics = {}      # layer -> scalar metric (search only)
        self._pending = None   # (layer, score-path tensor) waiting for the next layer

    def _after_conv(self, index, node):
        normal = node.tensor
        if self._pending is not None:
            conv = self.trace.convs[index]
            shadow = self._emit_conv(self._pending[1], self.variables[conv.kernel], conv.strides,
                                     conv.padding)
            if conv.bn:
                bn = next(b for b in self.trace.bns if b.scope == conv.bn)
                shadow, _, _ = tf.nn.fused_batch_norm(
                    shadow, self.variables[bn.scope + '/gamma'], self.variables[bn.scope + '/beta'],
                    epsilon=bn.epsilon, is_training=True)
            self._finish_metric(normal, self.activation(Node(shadow, node.spec), conv.activation))
        if index not in self.target_layers:
            return node
        width = node.channels
        base = tf.placeholder_with_default(tf.ones([width]), [width], name='base_mask%d' % index)
        self.base_masks[index] = base
        if self.search:
            score = tf.placeholder_with_default(tf.ones([width]), [width],
                                                name='score_mask%d' % index)
            self.score_masks[index] = score
            self._pending = (index, normal * score)
        return Node(normal * base, node.spec)

    def _after_affine(self, index, node):
        if self._pending is not None:
            layer = self.trace.affines[index]
            shadow = self._emit_affine(self._pending[1], self.variables[layer.kernel],
                                       self.variables[layer.bias])
            self._finish_metric(node.tensor, self.activation(Node(shadow, node.spec), 'relu'))
        return node

    def _finish_metric(self, normal, shadow_node):
        layer, _ = self._pending
        self._pending = None
        error = tf.reduce_mean(tf.square(normal - shadow_node.tensor))
        self.metrics[layer] = error / (tf.reduce_mean(tf.square(normal)) + _TINY)

    def _emit_pool(self, kind, x, ksize, strides, mode):
        if self._pending is not None:
            layer, score = self._pending
            self._pending = (layer, super()._emit_pool(kind, score, ksize, strides, mode))
        return super()._emit_pool(kind, x, ksize, strides, mode)

    def _emit_flatten(self, x, size):
        if self._pending is not None:
            layer, score = self._pending
            self._pending = (layer, super()._emit_flatten(score, size))
        return super()._emit_flatten(x, size)

    def _emit_concat(self, xs):
        if self._pending is not None:
            raise ValueError('the AOFP masked graph supports chain models (each target layer '
                             'feeding one conv or the first FC), not concatenations')
        return super()._emit_concat(xs)
