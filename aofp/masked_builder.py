"""AOFP's multi-path masked graph (the original BDSConvNetBuilder), for any model the builder
describes: chains (`vc`), concatenations (`dc40`) and residual channel groups (`src56`/`src110`).

Base path: every target layer t (a channel group's root) has a base mask (a [C_t] placeholder, all
ones by default; in training, a variable that the search assigns before each step). It is applied where t's channels are consumed: at the input of every conv and FC
layer whose input holds them (found from the trace's channel provenance, so after any pooling,
concatenation, BN-ReLU or residual add in between). A masked channel is then exactly a removed one:
its consumers never see it, which is what the physical pruning does. The loss and the logits use
only this path. The mask multiplies whichever is smaller, the consumer's kernel along its input
channels or its input: conv(x, W * m) = conv(x * m, W), value and gradients alike (the ResNets'
kernels are far smaller than their activations, `vc`'s last layers' far larger).

With `search=True`, each target layer t also gets score paths: the filters fed in
`dropped_filters[t]` (a random half of its search space; in training, the nonzero entries of a
0/1 variable `drop_masks[t]`) are dropped at the input of each consumer
c, which is recomputed by subtraction, exactly, from the base path's own convolution:
    shadow_c = conv_c(x) - conv_c(x[..., D], W_c[:, :, D, :])    (D: t's dropped channels in x)
then normalized like c (its BN with the score path's own batch statistics, moving averages not
updated; in an inference graph, `phase_train=False`, with the moving statistics as c itself: the
oracle's exact scores) and activated like c. Its error is the relative squared error of c's output,
    e_c = mean((normal_c - shadow_c)^2) / mean(normal_c^2)
(each mean one `l2_loss` pass), and t's per-step metric is the mean of e_c over its consumers (for
`vc` and the ResNets' internal layers there is one: the next layer, as in the original). Everything
runs in the training step's single forward pass; no gradient flows through the score paths.

A depthwise conv (imported Keras networks) is no consumer here: it is per channel and keeps its
input's provenance, so a target's channels that pass through a depthwise conv, its BN and its
activation (where a masked channel is no longer zero) are masked, and scored, at the input of the
first conv or FC layer after them, where dropping them is exactly removing the target's filters
(its depthwise channels go with them).
"""

from tf_benchmarks.network.batch_norm import batch_norm_training
from tf_benchmarks.network.convnet_builder import ConvNetBuilder, activate
import tensorflow.compat.v1 as tf

_TINY = 1e-12
_SELECT_BY_PRODUCT = 128  # up to this many channels, select them by a matrix product (see below)


def _select_channels(x, positions):
    """x[..., positions] of an NHWC tensor, exactly. Up to _SELECT_BY_PRODUCT channels, as the
    product with a one-hot [C, k] matrix (each output is one input times 1 plus exact zeros), which
    oneDNN runs 1.5-4x faster than GatherV2 on the innermost axis; wider tensors (at small spatial
    sizes) gather faster."""
    channels = x.shape.as_list()[-1]
    if channels > _SELECT_BY_PRODUCT:
        return tf.gather(x, positions, axis=3)
    selection = tf.one_hot(positions, channels, dtype=x.dtype, axis=0)
    out_shape = tf.concat([tf.shape(x)[:3], tf.shape(positions)], 0)
    return tf.reshape(tf.matmul(tf.reshape(x, [-1, channels]), selection), out_shape)


class MaskedConvNetBuilder(ConvNetBuilder):
    """ConvNetBuilder with AOFP masks on `target_layers` and, when `search`, score paths + metrics."""

    def __init__(self, images, phase_train, target_layers, search=False, mask_variables=False,
                 **kwargs):
        super().__init__(images, phase_train, **kwargs)
        self.target_layers = frozenset(target_layers)
        self.search = search
        self.mask_variables = mask_variables
        self.base_masks = {}       # layer -> [C] float tensor (placeholder, or a variable's value)
        self.dropped_filters = {}  # layer -> [k] int32 tensor (search only)
        self.variables_of_masks = {}  # layer -> (base mask, drop mask) variables (mask_variables)
        self._errors = {}          # layer -> [relative error at each consumer]
        self._shadows = []         # (target, shadow pre-BN output) of the conv being built
        self._pending_mask = None  # the input mask of the conv or FC layer being built
        self._metrics = None

    @property
    def metrics(self):
        """{target layer: scalar metric}, the mean relative error over its consumers."""
        if self._metrics is None:
            self._metrics = {t: tf.add_n(e) / float(len(e)) for t, e in self._errors.items()}
        return self._metrics

    # -- masks at the consumers' inputs ----------------------------------------------------------
    def _targets_in(self, spec):
        """[(target, segment)] for the segments of `spec` that a target layer produced."""
        found = []
        for seg in spec.segments:
            if seg.producer is not None:
                root = self.trace.root_of(seg.producer)
                if root in self.base_masks:
                    found.append((root, seg))
        return found

    def _input_mask(self, node):
        """The base masks of the target channels the node holds as one vector over its channels
        (flattened NHWC: over its positions' channels), or None where it holds none."""
        if not self._targets_in(node.spec):
            return None
        parts = []
        for seg in node.spec.segments:
            root = self.trace.root_of(seg.producer) if seg.producer is not None else None
            parts.append(self.base_masks[root] if root in self.base_masks
                         else tf.ones([seg.count]))
        vector = tf.concat(parts, 0) if len(parts) > 1 else parts[0]
        repeats = node.spec.segments[0].repeats
        if repeats > 1:  # flattened NHWC: channel c at p * C + c
            vector = tf.tile(vector, [repeats])
        return vector

    def _masked(self, x, kernel):
        """(x, kernel) with the pending input mask applied to the smaller of the two: the input
        (NHWC, or flat with the mask tiled over positions) or the kernel (HWIO or [in, out]) along
        its input channels. Either way every product x_i * W_i is exactly itself or exactly 0."""
        mask, self._pending_mask = self._pending_mask, None
        if mask is None:
            return x, kernel
        inputs = x.shape.num_elements()
        if inputs is not None and inputs < kernel.shape.num_elements():
            return x * tf.cast(mask, x.dtype), kernel
        return x, kernel * mask[:, None]

    @staticmethod
    def _positions(seg, dropped):
        """Positions of a segment's dropped channels in the consumer's input."""
        if seg.repeats == 1:
            return dropped + seg.offset
        offsets = tf.range(seg.repeats) * seg.period + seg.offset
        return tf.reshape(dropped[None, :] + offsets[:, None], [-1])

    def _conv_input(self, index, node):
        self._pending_mask = self._input_mask(node)
        self._shadows = []
        if self.search:
            self._pending_conv = [(t, self._positions(seg, self.dropped_filters[t]))
                                  for t, seg in self._targets_in(node.spec)]
        return node.tensor

    def _emit_conv(self, x, kernel, strides, mode):
        x, kernel = self._masked(x, kernel)
        y = super()._emit_conv(x, kernel, strides, mode)
        if self.search:
            for t, positions in self._pending_conv:
                def without_dropped(positions=positions):
                    return y - self.conv2d(_select_channels(x, positions),
                                           tf.gather(kernel, positions, axis=2), strides, mode)
                self._shadows.append((t, tf.cond(tf.size(positions) > 0, without_dropped,
                                                 lambda: y)))
            self._pending_conv = []
        return y

    def _emit_bias(self, x, bias):
        """A conv's bias, added to its score paths too (a depthwise conv has none pending)."""
        self._shadows = [(t, tf.nn.bias_add(s, bias)) for t, s in self._shadows]
        return super()._emit_bias(x, bias)

    def _after_conv(self, index, node):
        conv = self.trace.convs[index]
        for t, shadow in self._shadows:
            if conv.bn:
                shadow = self._shadow_batch_norm(shadow, conv.bn)
            self._record(t, node.tensor, self.activation_tensor(shadow, conv.activation))
        self._shadows = []
        if index in self.target_layers:
            width = node.channels
            if self.mask_variables:  # per-step state in variables: the same on every replica
                base = tf.get_variable('base_mask%d' % index, [width], tf.float32,
                                       tf.ones_initializer(), trainable=False)
                drop = tf.get_variable('drop_mask%d' % index, [width], tf.float32,
                                       tf.zeros_initializer(), trainable=False)
                self.variables_of_masks[index] = (base, drop)
                self.base_masks[index] = tf.identity(base)
                if self.search:
                    self.dropped_filters[index] = tf.cast(tf.where(drop > 0)[:, 0], tf.int32)
            else:
                self.base_masks[index] = tf.placeholder_with_default(
                    tf.ones([width]), [width], name='base_mask%d' % index)
                if self.search:
                    self.dropped_filters[index] = tf.placeholder_with_default(
                        tf.zeros([0], tf.int32), [None], name='dropped_filters%d' % index)
        return node

    def _shadow_batch_norm(self, shadow, scope):
        """The consumer's BN on a score path: in training, with the score path's own batch
        statistics (moving averages not updated); in an inference graph, with the moving statistics,
        as the consumer itself."""
        bn = next(b for b in self.trace.bns if b.scope == scope)
        gamma, beta = self.variables[scope + '/gamma'], self.variables[scope + '/beta']
        if self.phase_train:
            shadow, _, _ = batch_norm_training(shadow, gamma, beta, bn.epsilon)
        else:
            shadow, _, _ = tf.nn.fused_batch_norm(
                shadow, gamma, beta, mean=self.variables[scope + '/moving_mean'],
                variance=self.variables[scope + '/moving_variance'], epsilon=bn.epsilon,
                is_training=False)
        return shadow

    def _affine_input(self, index, node):
        self._pending_mask = self._input_mask(node)
        self._affine_shadows = []
        self._pending_affine = [(t, self._positions(seg, self.dropped_filters[t]))
                                for t, seg in self._targets_in(node.spec)] if self.search else []
        return node.tensor

    def _emit_affine(self, x, kernel, bias):
        """The FC output, and for each pending target the same output without its dropped inputs
        (by subtraction from this one, as for convolutions)."""
        x, kernel = self._masked(x, kernel)
        y = super()._emit_affine(x, kernel, bias)
        for t, positions in self._pending_affine:
            self._affine_shadows.append((t, y - tf.matmul(tf.gather(x, positions, axis=1),
                                                          tf.gather(kernel, positions, axis=0))))
        self._pending_affine = []
        return y

    def _after_affine(self, index, node):
        layer = self.trace.affines[index]
        for t, shadow in self._affine_shadows:
            self._record(t, node.tensor, self.activation_tensor(shadow, layer.activation))
        self._affine_shadows = []
        return node

    def activation_tensor(self, x, activation):
        return activate(x, activation)

    def _record(self, target, normal, shadow):
        """e = mean((normal - shadow)^2) / mean(normal^2), each mean as 2 * l2_loss / size: one
        reduction pass over the tensor instead of a squared copy and a pass over it."""
        # in float32 also where the activations are bfloat16 (a no-op in float32)
        normal, shadow = tf.cast(normal, tf.float32), tf.cast(shadow, tf.float32)
        size = normal.shape.num_elements()
        size = float(size) if size is not None else tf.cast(tf.size(normal), tf.float32)
        error = 2.0 * tf.nn.l2_loss(normal - shadow) / size
        self._errors.setdefault(target, []).append(
            error / (2.0 * tf.nn.l2_loss(normal) / size + _TINY))
