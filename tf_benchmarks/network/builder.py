"""The plain-Python builder: names layers by counters, tracks shapes and records a `NetworkTrace`.

A model is written once as a list of builder calls (`conv`, `batch_norm`, `mpool`, `concat`, `affine`,
...). Run with this base class it builds no graph and only records the trace; run with
`tf_benchmarks.network.convnet_builder.ConvNetBuilder` it also emits the TensorFlow ops. Both name
every variable the same way, so a trace describes exactly the variables of the graph.
"""

import collections
import contextlib
import dataclasses
from typing import List

from tf_benchmarks.network.trace import (BETA, BIAS, BN_ROLES, GAMMA, KERNEL, MOVING_MEAN, MOVING_VARIANCE, SELECT, SUM, AffineLayer, BatchNormLayer, ConvLayer, DepthwiseLayer, NetworkTrace, Segment, Slot, TensorSpec, VariableInfo)

# The element-wise activations `activation(...)` and the layers' `activation=` take (None and
# 'linear' are the identity). hard_sigmoid is relu6(x + 3) / 6 and hard_swish x * hard_sigmoid(x),
# Keras 3's definitions; swish is x * sigmoid(x).
ACTIVATIONS = ('relu', 'relu6', 'sigmoid', 'tanh', 'swish', 'hard_sigmoid', 'hard_swish')


class Node:
    """A builder-level tensor: the TF tensor (None when only tracing) and its static spec."""
    __slots__ = ('tensor', 'spec')

    def __init__(self, tensor, spec):
        self.tensor = tensor
        self.spec = spec

    @property
    def channels(self):
        return self.spec.channels


def _out_size(size, k, stride, mode):
    if mode == 'SAME' or (mode == 'SAME_RESNET' and stride == 1):
        return -(-size // stride)
    if mode == 'SAME_RESNET':  # explicit (k-1)//2 before, k-1-(k-1)//2 after, then VALID
        return (size + k - 1 - k) // stride + 1
    if mode == 'VALID':
        return (size - k) // stride + 1
    raise ValueError('padding mode must be SAME, SAME_RESNET or VALID, got %r' % (mode,))


class NetworkBuilder:
    """ConvNetBuilder-style builder (tf_cnn_benchmarks API) that only records a `NetworkTrace`.

    Layers are named by per-type counters (`conv0`, `conv1`, ..., `batchnorm0`, `affine0`, ...) unless
    `name=` is given. Subclasses emit real ops by overriding the `_emit_*` methods, which all return
    None here.
    """

    def __init__(self, input_tensor=None, image_shape=(32, 32, 3), phase_train=True,
                 bn_decay=0.9, bn_epsilon=1e-3):
        h, w, c = image_shape
        self.phase_train = phase_train
        self.bn_decay = bn_decay
        self.bn_epsilon = bn_epsilon
        self.trace = NetworkTrace()
        self.counts = collections.defaultdict(int)
        self._scopes: List[str] = []
        self.top_layer = Node(input_tensor, TensorSpec(h, w, c, (Segment(None, c, 0),)))

    # -- naming ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def variable_scope(self, name, reuse=None):
        """Enter a variable scope; every `/`-separated part becomes part of the variable names."""
        parts = name.split('/')
        self._scopes.extend(parts)
        try:
            with self._emit_scope(name, reuse):
                yield
        finally:
            del self._scopes[-len(parts):]

    def full_name(self, name):
        return '/'.join(self._scopes + [name])

    def current_scope(self):
        return '/'.join(self._scopes)

    def _next(self, kind):
        n = self.counts[kind]
        self.counts[kind] += 1
        return n

    def variable(self, name, shape, initializer, role, trainable=True):
        full = self.full_name(name)
        shape = tuple(int(s) for s in shape)
        if full in self.trace.variables:
            raise ValueError('variable %s is created twice' % full)
        self.trace.variables[full] = VariableInfo(shape, trainable, role)
        return self._emit_variable(name, full, shape, initializer, trainable)

    def _input(self, input_layer):
        return self.top_layer if input_layer is None else input_layer

    def _set_top(self, node):
        self.top_layer = node
        return node

    # -- layers ---------------------------------------------------------------------------------
    def conv(self, num_out, k_h, k_w, d_h=1, d_w=1, mode='SAME', input_layer=None,
             use_batch_norm=True, activation='relu', name=None, kernel_initializer='glorot_uniform',
             use_bias=False, bn_name=None, bn_epsilon=None):
        """k_h x k_w conv (a bias with `use_bias`), optional BN, activation. Output channels
        become a new producer.

        Default names follow the AOFP builder: `convN/conv2d/kernel` (`convN/conv2d/bias`),
        `convN/batchnormM/...`; with `name=` the kernel is `<name>/kernel` (`<name>/bias`); with
        `bn_name=` the BN is `<conv scope>/<bn_name>/...`; `bn_epsilon` is its epsilon (default:
        the builder's).
        """
        inp = self._input(input_layer)
        counter = self._next('conv')
        index = len(self.trace.convs)
        scope = name or 'conv%d' % counter
        out_h = _out_size(inp.spec.height, k_h, d_h, mode)
        out_w = _out_size(inp.spec.width, k_w, d_w, mode)
        with self.variable_scope(scope):
            kernel_name = 'kernel' if name else 'conv2d/kernel'
            kernel = self.variable(kernel_name, (k_h, k_w, inp.channels, num_out),
                                   kernel_initializer, KERNEL)
            full_kernel = self.full_name(kernel_name)
            macs = k_h * k_w * inp.channels * num_out * out_h * out_w
            self.trace.convs.append(ConvLayer(index, full_kernel, inp.channels, num_out,
                                              (k_h, k_w), (out_h, out_w), macs, (d_h, d_w), mode,
                                              activation))
            self.trace.add_slots(inp.spec.segments, full_kernel, 2, SUM)
            self.trace.slots[index].append(Slot(full_kernel, 3, 0, SELECT))
            tensor = self._emit_conv(self._conv_input(index, inp), kernel, (d_h, d_w), mode)
            if use_bias:
                bias_name = 'bias' if name else 'conv2d/bias'
                bias = self.variable(bias_name, (num_out,), 'zeros', BIAS)
                self.trace.convs[index].bias = self.full_name(bias_name)
                self.trace.slots[index].append(Slot(self.full_name(bias_name), 0, 0, SELECT))
                tensor = self._emit_bias(tensor, bias)
            node = Node(tensor, TensorSpec(out_h, out_w, num_out, (Segment(index, num_out, 0),)))
            if use_batch_norm:
                node = self.batch_norm(node, name=bn_name, epsilon=bn_epsilon)
                self.trace.convs[index].bn = self.trace.bns[-1].scope
            node = self.activation(node, activation)
            node = self._after_conv(index, node)
        return self._set_top(node)

    def batch_norm(self, input_layer=None, name=None, decay=None, epsilon=None):
        """Batch norm with gamma and beta (fused; train mode uses batch statistics)."""
        inp = self._input(input_layer)
        counter = self._next('batchnorm')
        scope = name or 'batchnorm%d' % counter
        c = inp.channels
        epsilon = self.bn_epsilon if epsilon is None else epsilon
        with self.variable_scope(scope):
            gamma = self.variable('gamma', (c,), 'ones', GAMMA)
            beta = self.variable('beta', (c,), 'zeros', BETA)
            mean = self.variable('moving_mean', (c,), 'zeros', MOVING_MEAN, trainable=False)
            var = self.variable('moving_variance', (c,), 'ones', MOVING_VARIANCE, trainable=False)
            full = self.current_scope()
            self.trace.bns.append(BatchNormLayer(len(self.trace.bns), full, c, inp.spec.segments,
                                                 epsilon))
            for role in BN_ROLES:
                self.trace.add_slots(inp.spec.segments, full + '/' + role, 0, SELECT)
            tensor = self._emit_batch_norm(inp.tensor, gamma, beta, mean, var,
                                           self.bn_decay if decay is None else decay, epsilon)
        return self._set_top(Node(tensor, inp.spec))

    def activation(self, input_layer=None, activation='relu'):
        """An element-wise activation of ACTIVATIONS (None or 'linear': the input itself)."""
        inp = self._input(input_layer)
        if activation in (None, 'linear'):
            return self._set_top(inp)
        if activation not in ACTIVATIONS:
            raise ValueError('unsupported activation %r; supported: %s'
                             % (activation, ', '.join(ACTIVATIONS)))
        if activation == 'relu':
            return self.relu(inp)
        return self._set_top(Node(self._emit_activation(inp.tensor, activation), inp.spec))

    def relu(self, input_layer=None):
        inp = self._input(input_layer)
        return self._set_top(Node(self._emit_relu(inp.tensor), inp.spec))

    def depthwise_conv(self, k_h, k_w, d_h=1, d_w=1, mode='SAME', use_bias=False, name=None,
                       input_layer=None, kernel_initializer='glorot_uniform'):
        """k_h x k_w depthwise conv (one filter per input channel, depth multiplier 1; a bias
        with `use_bias`). It is no producer: its output channels keep its input's provenance, and
        its kernel and bias are SELECT slots of the producers of its input, so removing a
        producer's channel removes the depthwise channel too. Names `depthwiseN/depthwise_kernel`
        (`depthwiseN/bias`), or `<name>/...`."""
        inp = self._input(input_layer)
        if d_h != d_w:
            raise ValueError('a depthwise conv takes one stride for both axes, got %d and %d'
                             % (d_h, d_w))
        counter = self._next('depthwise')
        scope = name or 'depthwise%d' % counter
        c = inp.channels
        out_h = _out_size(inp.spec.height, k_h, d_h, mode)
        out_w = _out_size(inp.spec.width, k_w, d_w, mode)
        with self.variable_scope(scope):
            kernel = self.variable('depthwise_kernel', (k_h, k_w, c, 1), kernel_initializer,
                                   KERNEL)
            full_kernel = self.full_name('depthwise_kernel')
            self.trace.add_slots(inp.spec.segments, full_kernel, 2, SELECT)
            layer = DepthwiseLayer(len(self.trace.depthwise), full_kernel, None, c, (k_h, k_w),
                                   (out_h, out_w), k_h * k_w * c * out_h * out_w, (d_h, d_w), mode)
            self.trace.depthwise.append(layer)
            tensor = self._emit_depthwise(inp.tensor, kernel, (d_h, d_w), mode)
            if use_bias:
                bias = self.variable('bias', (c,), 'zeros', BIAS)
                layer.bias = self.full_name('bias')
                self.trace.add_slots(inp.spec.segments, layer.bias, 0, SELECT)
                tensor = self._emit_bias(tensor, bias)
        spec = dataclasses.replace(inp.spec, height=out_h, width=out_w)
        return self._set_top(Node(tensor, spec))

    def pad(self, top, bottom, left, right, input_layer=None):
        """Zero padding of the spatial axes (Keras' ZeroPadding2D)."""
        inp = self._input(input_layer)
        if min(top, bottom, left, right) < 0:
            raise ValueError('padding must be non-negative, got %r' % ((top, bottom, left, right),))
        spec = dataclasses.replace(inp.spec, height=inp.spec.height + top + bottom,
                                   width=inp.spec.width + left + right)
        return self._set_top(Node(self._emit_pad(inp.tensor, ((top, bottom), (left, right))),
                                  spec))

    def mpool(self, k_h, k_w, d_h=2, d_w=2, mode='VALID', input_layer=None):
        return self._pool('max', k_h, k_w, d_h, d_w, mode, input_layer)

    def apool(self, k_h, k_w, d_h=2, d_w=2, mode='VALID', input_layer=None):
        return self._pool('avg', k_h, k_w, d_h, d_w, mode, input_layer)

    def _pool(self, kind, k_h, k_w, d_h, d_w, mode, input_layer):
        inp = self._input(input_layer)
        self._next('mpool' if kind == 'max' else 'apool')
        spec = dataclasses.replace(inp.spec, height=_out_size(inp.spec.height, k_h, d_h, mode),
                                   width=_out_size(inp.spec.width, k_w, d_w, mode))
        tensor = self._emit_pool(kind, inp.tensor, (k_h, k_w), (d_h, d_w), mode)
        return self._set_top(Node(tensor, spec))

    def concat(self, nodes):
        """Concatenate along channels; provenance segments are shifted to their new offsets."""
        segments, offset = [], 0
        h, w = nodes[0].spec.height, nodes[0].spec.width
        for node in nodes:
            if (node.spec.height, node.spec.width) != (h, w):
                raise ValueError('concat of tensors with different spatial sizes')
            for seg in node.spec.segments:
                segments.append(dataclasses.replace(seg, offset=seg.offset + offset))
            offset += node.channels
        tensor = self._emit_concat([n.tensor for n in nodes])
        return self._set_top(Node(tensor, TensorSpec(h, w, offset, tuple(segments))))

    def add(self, nodes):
        """Residual add of tensors of one shape. The producers of each channel position are joined
        into one channel group; the output keeps the first input's provenance."""
        first = nodes[0].spec
        for node in nodes[1:]:
            spec = node.spec
            if (spec.height, spec.width, spec.channels) != (first.height, first.width,
                                                            first.channels):
                raise ValueError('add of tensors of different shapes: %s and %s'
                                 % ((first.height, first.width, first.channels),
                                    (spec.height, spec.width, spec.channels)))
            layout = [(g.count, g.offset, g.period, g.repeats) for g in spec.segments]
            if layout != [(g.count, g.offset, g.period, g.repeats) for g in first.segments]:
                raise ValueError('add of tensors whose channels come from differently laid out '
                                 'producers')
            for a, b in zip(first.segments, spec.segments):
                if (a.producer is None) != (b.producer is None):
                    raise ValueError('add of a conv output and a tensor no conv produced')
                if a.producer is not None:
                    self.trace.join(a.producer, b.producer)
        tensor = self._emit_add([n.tensor for n in nodes])
        return self._set_top(Node(tensor, first))

    def spatial_mean(self, input_layer=None):
        """Global average pooling to [batch, C]."""
        inp = self._input(input_layer)
        spec = TensorSpec(1, 1, inp.channels, inp.spec.segments)
        return self._set_top(Node(self._emit_spatial_mean(inp.tensor), spec))

    def flatten(self, input_layer=None):
        """NHWC flatten to [batch, H*W*C]: channel c at spatial position p goes to p*C + c."""
        inp = self._input(input_layer)
        s = inp.spec
        hw = s.height * s.width
        segments = tuple(dataclasses.replace(seg, period=s.channels if hw > 1 else 0, repeats=hw)
                         for seg in s.segments)
        spec = TensorSpec(1, 1, s.channels * hw, segments)
        return self._set_top(Node(self._emit_flatten(inp.tensor, s.channels * hw), spec))

    def affine(self, num_out, activation='relu', name=None, input_layer=None,
               kernel_initializer='glorot_uniform'):
        """Dense layer with bias. Default names `affineN/dense/{kernel,bias}` (tf.layers.dense)."""
        inp = self._input(input_layer)
        if (inp.spec.height, inp.spec.width) != (1, 1):
            raise ValueError('affine needs a flat input: call flatten() or spatial_mean() first')
        counter = self._next('affine')
        scope = name or 'affine%d' % counter
        prefix = '' if name else 'dense/'
        with self.variable_scope(scope):
            kernel = self.variable(prefix + 'kernel', (inp.channels, num_out), kernel_initializer,
                                   KERNEL)
            bias = self.variable(prefix + 'bias', (num_out,), 'zeros', BIAS)
            kernel_full = self.full_name(prefix + 'kernel')
            index = len(self.trace.affines)
            self.trace.affines.append(AffineLayer(index, kernel_full,
                                                  self.full_name(prefix + 'bias'), inp.channels,
                                                  num_out, inp.channels * num_out, activation))
            self.trace.add_slots(inp.spec.segments, kernel_full, 0, SUM)
            tensor = self._emit_affine(self._affine_input(index, inp), kernel, bias)
            node = Node(tensor, TensorSpec(1, 1, num_out, (Segment(None, num_out, 0),)))
            node = self.activation(node, activation)
            node = self._after_affine(len(self.trace.affines) - 1, node)
        return self._set_top(node)

    # -- extension points (identity here; AOFP's masked builder uses them) ----------------------
    def _conv_input(self, index, node):
        """The tensor conv layer `index` convolves, given its input node."""
        return node.tensor

    def _affine_input(self, index, node):
        """The tensor affine layer `index` multiplies, given its (flat) input node."""
        return node.tensor

    def _after_conv(self, index, node):
        """Called with conv layer `index`'s activated output; returns the node that goes on."""
        return node

    def _after_affine(self, index, node):
        """Called with affine layer `index`'s activated output; returns the node that goes on."""
        return node

    # -- op emission (none when tracing) --------------------------------------------------------
    def _emit_scope(self, name, reuse):
        return contextlib.nullcontext()

    def _emit_variable(self, name, full_name, shape, initializer, trainable):
        return None

    def _emit_conv(self, x, kernel, strides, mode):
        return None

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        return None

    def _emit_bias(self, x, bias):
        return None

    def _emit_depthwise(self, x, kernel, strides, mode):
        return None

    def _emit_pad(self, x, paddings):
        return None

    def _emit_relu(self, x):
        return None

    def _emit_activation(self, x, activation):
        return None

    def _emit_pool(self, kind, x, ksize, strides, mode):
        return None

    def _emit_concat(self, xs):
        return None

    def _emit_add(self, xs):
        return None

    def _emit_spatial_mean(self, x):
        return None

    def _emit_flatten(self, x, size):
        return None

    def _emit_affine(self, x, kernel, bias):
        return None
