"""`import-keras MODEL.keras --out FILE.hdf5`: a Keras model file (read as data by
files.keras_file) as builder calls, widths, input and weights, written as an ordinary weight file.

Each Keras layer becomes builder calls (docs/keras-import.md has the table): a Conv2D with the
BatchNormalization and activation that alone follow it is one `conv`, named after the Keras layers
(`<conv>/kernel`, `<conv>/bias`, `<conv>/<bn>/gamma`; a nested model's layers under
`<model>/...`), so the weight names are the Keras names. Rescaling and Normalization layers at the
model's start become the input's mean and std in pixel units; a final softmax is dropped, so the
network outputs logits. Anything else is one UserError naming the layer, its type and why.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from tf_benchmarks.core.errors import UserError, cannot_write_message
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.files.keras_file import input_shape_of, read_keras_file
from tf_benchmarks.models.registry import ModelSpec
from tf_benchmarks.network.builder import NetworkBuilder
from tf_benchmarks.network.input_spec import MAX_SIZE, MIN_SIZE, InputSpec, spec_with
from tf_benchmarks.network.trace import BETA, GAMMA, MOVING_MEAN, MOVING_VARIANCE

# Keras activation names -> the builder's (network.builder.ACTIVATIONS; None is the identity).
ACTIVATIONS = {'linear': None, 'relu': 'relu', 'relu6': 'relu6', 'sigmoid': 'sigmoid',
               'tanh': 'tanh', 'swish': 'swish', 'silu': 'swish', 'hard_swish': 'hard_swish',
               'hard_silu': 'hard_swish', 'hard_sigmoid': 'hard_sigmoid'}
MODELS = ('Functional', 'Model', 'Sequential')
IDENTITY = ('Dropout', 'SpatialDropout2D', 'GaussianDropout', 'GaussianNoise', 'AlphaDropout')
REFUSED = {
    'Lambda': 'it holds Python code, which an import never runs',
    'LayerNormalization': 'it normalizes over each position\'s channels, which filter pruning '
                          'cannot cut',
    'SeparableConv2D': 'it has no builder op; build it as DepthwiseConv2D + a 1x1 Conv2D',
    'Multiply': 'products of tensors (squeeze-and-excitation) have no builder op',
    'Reshape': 'reshapes have no builder op (Flatten and GlobalAveragePooling2D do)',
    'Conv1D': 'only 2-D convolutions are supported',
    'Conv3D': 'only 2-D convolutions are supported',
}
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.\-]*$')
_NORMALIZED_AWAY = re.compile(r'^(v\d+|tower_\d+|ExponentialMovingAverage)$')
IMAGE = -1  # the reference of the network's input in the calls


@dataclasses.dataclass
class Call:
    """One builder method call: `method(**kwargs)` on the nodes `inputs` (call indices, IMAGE for
    the input; `nodes=` for add/concat, `input_layer=` otherwise). A conv's `num_out` is
    deps[conv]; the classifier's is the number of classes."""
    method: str
    kwargs: dict
    inputs: Tuple[int, ...]
    conv: Optional[int] = None
    classifier: bool = False


@dataclasses.dataclass
class KerasNetwork:
    """An imported Keras model: its builder calls, default widths (one per Conv2D), classes,
    input, and weights keyed by the builder's variable names."""
    name: str
    calls: List[Call]
    default_deps: Tuple[int, ...]
    num_classes: int
    image_shape: Tuple[int, int, int]
    input_spec: InputSpec
    weights: Dict[str, np.ndarray]
    softmax_dropped: bool = False
    source: str = ''              # '.keras' or 'legacy h5', and the Keras version that wrote it

    def add_inference(self, cnn, deps, num_classes):
        """The model's builder calls on `cnn` at widths `deps`; returns the logits node."""
        nodes = {IMAGE: cnn.top_layer}
        node = None
        for i, call in enumerate(self.calls):
            kwargs = dict(call.kwargs)
            if call.conv is not None:
                kwargs['num_out'] = deps[call.conv]  # as given: a description records its index
            if call.classifier:
                kwargs['num_out'] = num_classes
            if call.method in ('add', 'concat'):
                node = getattr(cnn, call.method)([nodes[r] for r in call.inputs], **kwargs)
            else:
                node = getattr(cnn, call.method)(input_layer=nodes[call.inputs[0]], **kwargs)
            nodes[i] = node
        return node

    def model_spec(self):
        """The network as a ModelSpec (name `keras_<model name>`: it names the run's files)."""
        return ModelSpec('keras_' + self.name, self.default_deps, self.num_classes,
                         self.num_classes, self.add_inference,
                         'imported Keras model %s' % self.name, image_size=self.image_shape[0])


def _refuse(layer, why):
    return UserError('Keras layer %s (%s) cannot be imported: %s; nothing was written'
                     % ('/'.join(layer.path), layer.cls, why))


@dataclasses.dataclass
class _Layer:
    path: Tuple[str, ...]
    cls: str
    config: dict
    inbound: List[Tuple[str, int, int]]
    entry: dict


def _history(item):
    """(layer, node, tensor) of an inbound tensor in Keras 3's or Keras 2's config form."""
    if isinstance(item, dict) and item.get('class_name') == '__keras_tensor__':
        history = item.get('config', {}).get('keras_history')
    else:
        history = item[:3] if isinstance(item, list) else None
    if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)):
        raise ValueError('an inbound tensor reference %r' % (str(item)[:100],))
    return history[0], int(history[1]), int(history[2])


def _inbound(entry, path):
    """The layer's inputs, from its one inbound node (a layer called twice shares its weights,
    which the builder cannot express)."""
    nodes = entry.get('inbound_nodes') or []
    if len(nodes) > 1:
        raise UserError('Keras layer %s is called %d times (shared weights), which cannot be '
                        'imported; nothing was written' % ('/'.join(path), len(nodes)))
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        out = []
        for arg in node.get('args', []):
            out.extend(_history(a) for a in (arg if isinstance(arg, list) else [arg]))
        return out
    return [_history(item) for item in node]  # Keras 2: [[layer, node, tensor, kwargs], ...]


def _refs(value):
    """[layer, node, tensor] or a list of them (input_layers / output_layers)."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [(value[0], int(value[1]), int(value[2]))]
    return [(v[0], int(v[1]), int(v[2])) for v in value]


class _Importer:
    """Walks a model config in topological order, calling a tracing NetworkBuilder (for shapes and
    checks) and recording the same calls, with the weights each Keras layer supplies."""

    def __init__(self, keras_file, image_size=None):
        self.file = keras_file
        self.image_size = image_size
        self.calls: List[Call] = []
        self.builder = None
        self.nodes = {}           # call index -> builder Node
        self.deps: List[int] = []
        self.assignments = []     # (keras layer, [builder variable names in Keras' order], defaults)
        self.scale = np.ones(3)   # the input's folded Rescaling / Normalization: y = scale x + shift
        self.shift = np.zeros(3)
        self.softmaxes = []       # (call reference a softmax was dropped at, its layer)
        self.num_classes = None
        self.keras3 = not keras_file.keras_version.startswith(('1.', '2.'))

    # -- the model ------------------------------------------------------------------------------
    def run(self):
        top = self.file.config
        shape = self._input_shape(top)
        self.builder = NetworkBuilder(image_shape=shape)
        self.nodes[IMAGE] = self.builder.top_layer
        out = self._model(top, (), [IMAGE])
        if out == IMAGE or self.calls[out].method != 'affine':
            raise UserError('%s: the model must end with its classifier, a Dense layer (then '
                            'optionally a softmax), to be imported; nothing was written'
                            % self.file.path)
        for ref, layer in self.softmaxes:
            if ref != out:
                raise _refuse(layer, 'a softmax imports only at the model\'s end, on its '
                              'classifier (it is dropped: the network outputs logits)')
        call = self.calls[out]
        self.num_classes = call.kwargs.pop('num_out')
        call.classifier = True
        return shape, out

    def _input_shape(self, top):
        shape = self._find_input_shape(top)
        if shape is None or len(shape) != 4:
            raise UserError('%s: the model has no 4-D image input (batch, height, width, '
                            'channels); only image classifiers import' % self.file.path)
        _, h, w, c = shape
        h = h if h is not None else self.image_size
        w = w if w is not None else self.image_size
        if h is None or w is None:
            raise UserError('%s: the model\'s input size is not fixed; pass --image_size'
                            % self.file.path)
        if self.image_size and (h, w) != (self.image_size, self.image_size):
            raise UserError('%s: the model takes %dx%d images, not --image_size %d'
                            % (self.file.path, h, w, self.image_size))
        if h != w or c != 3 or not MIN_SIZE <= h <= MAX_SIZE:
            raise UserError('%s: the model takes %sx%sx%s inputs; imports need square RGB images '
                            '(3 channels, channels_last) of %d to %d pixels'
                            % (self.file.path, h, w, c, MIN_SIZE, MAX_SIZE))
        return int(h), int(w), int(c)

    def _find_input_shape(self, entry):
        config = entry.get('config', {})
        layers = config.get('layers', [])
        for layer in layers[:1] if entry.get('class_name') == 'Sequential' else layers:
            if layer.get('class_name') == 'InputLayer':
                return input_shape_of(layer.get('config', {}))
            if layer.get('class_name') in MODELS and entry.get('class_name') == 'Sequential':
                return self._find_input_shape(layer)
        if entry.get('class_name') == 'Sequential':
            if isinstance(config.get('build_input_shape'), list):
                return tuple(config['build_input_shape'])
            if layers:
                return input_shape_of(layers[0].get('config', {}))
        return None

    def _model(self, entry, prefix, inputs):
        """The calls of a Functional or Sequential model applied to `inputs` (call references);
        returns the reference of its output."""
        cls, config = entry.get('class_name'), entry.get('config', {})
        name = config.get('name') or entry.get('name') or 'model'
        if cls not in MODELS:
            raise UserError('%s: the top-level object is a %s, not a Keras model'
                            % (self.file.path, cls))
        if cls == 'Sequential':  # as a chain of inbound nodes from an input named ''
            layers, previous = [], ''
            for item in config.get('layers', []):
                if item.get('class_name') == 'InputLayer':
                    continue
                layer_name = self._layer_name(item, prefix)
                layers.append(_Layer(prefix + (layer_name,), item.get('class_name'),
                                     item.get('config', {}), [(previous, 0, 0)], item))
                previous = layer_name
            config = dict(input_layers=['', 0, 0], output_layers=[previous, 0, 0])
        else:
            layers = [_Layer(prefix + (self._layer_name(item, prefix),), item.get('class_name'),
                             item.get('config', {}),
                             _inbound(item, prefix + (str(item.get('name')),)), item)
                      for item in config.get('layers', [])]
        input_refs, output_refs = _refs(config['input_layers']), _refs(config['output_layers'])
        if len(input_refs) != 1 or len(output_refs) != 1 or len(inputs) != 1:
            raise UserError('%s: model %s has %d inputs and %d outputs; imports take one image '
                            'input and one output' % (self.file.path, name, len(input_refs),
                                                      len(output_refs)))
        consumers = {}
        for layer in layers:
            for source, _, _ in layer.inbound:
                consumers[source] = consumers.get(source, 0) + 1
        consumers[output_refs[0][0]] = consumers.get(output_refs[0][0], 0) + 1
        values = {input_refs[0][0]: inputs[0]}
        pending = [l for l in layers if l.path[-1] != input_refs[0][0]]
        while pending:  # Keras lists layers in topological order; this also takes any other
            ready = [l for l in pending if all(s in values for s, _, _ in l.inbound)]
            if not ready:
                raise UserError('%s: model %s has layers whose inputs are never computed (%s)'
                                % (self.file.path, name, ', '.join(l.path[-1] for l in pending)))
            layer = ready[0]
            pending.remove(layer)
            if layer.path[-1] in values:  # fused into the conv before it
                continue
            if layer.cls == 'InputLayer':
                raise UserError('%s: model %s has a second input %s; imports take one image input'
                                % (self.file.path, name, layer.path[-1]))
            refs = [values[s] for s, _, _ in layer.inbound]
            fused = self._fusable(layer, layers, consumers)
            ref = self._layer(layer, refs, fused=fused)
            values[layer.path[-1]] = ref
            for other in fused:
                values[other.path[-1]] = ref
        return values[output_refs[0][0]]

    def _layer_name(self, item, prefix):
        name = item.get('name') or item.get('config', {}).get('name')
        if not isinstance(name, str) or not _NAME.match(name) or \
                (not prefix and _NORMALIZED_AWAY.match(name)):
            raise UserError('%s: a layer name %r cannot name variables (letters, digits, _, . and '
                            '-, not v<N> or tower_<N>); rename the layer in Keras'
                            % (self.file.path, str(name)[:80]))
        return name

    def _fusable(self, layer, layers, consumers):
        """For a Conv2D without its own activation: the BatchNormalization and the activation
        layer that alone follow it (either may be missing), as conv(..., use_batch_norm,
        activation) fuses them (AOFP's score paths use the conv's own BN and activation)."""
        if layer.cls != 'Conv2D' or _activation_name(layer.config) is not None:
            return []
        fused, current = [], layer
        follower = self._only_consumer(current, layers, consumers)
        if follower is not None and follower.cls == 'BatchNormalization' and \
                _bn_axis_ok(follower.config):
            fused.append(follower)
            current = follower
        follower = self._only_consumer(current, layers, consumers)
        if follower is not None and follower.cls in ('ReLU', 'Activation') and \
                self._activation_of(follower) not in (False, None):
            fused.append(follower)
        return fused

    @staticmethod
    def _only_consumer(layer, layers, consumers):
        if consumers.get(layer.path[-1], 0) != 1:
            return None
        users = [l for l in layers if any(s == layer.path[-1] for s, _, _ in l.inbound)]
        return users[0] if len(users) == 1 and len(users[0].inbound) == 1 else None

    def _activation_of(self, layer):
        """The builder activation of a ReLU or Activation layer, False if it is none."""
        c = layer.config
        if layer.cls == 'ReLU':
            if float(c.get('negative_slope') or 0) != 0 or float(c.get('threshold') or 0) != 0:
                return False
            max_value = c.get('max_value')
            if max_value is None:
                return 'relu'
            return 'relu6' if float(max_value) == 6 else False
        name = _activation_name(c)
        return name if name is not False and name != 'softmax' else False

    # -- one layer ------------------------------------------------------------------------------
    def _call(self, layer, method, refs, **kwargs):
        conv = kwargs.pop('_conv', None)
        classifier = kwargs.pop('_classifier', False)
        call = Call(method, kwargs, tuple(refs), conv, classifier)
        args = dict(kwargs)
        if conv is not None:
            args['num_out'] = self.deps[conv]
        try:
            if method in ('add', 'concat'):
                node = getattr(self.builder, method)([self.nodes[r] for r in refs], **args)
            else:
                node = getattr(self.builder, method)(input_layer=self.nodes[refs[0]], **args)
        except ValueError as e:
            raise _refuse(layer, str(e))
        self.calls.append(call)
        self.nodes[len(self.calls) - 1] = node
        return len(self.calls) - 1

    def _layer(self, layer, refs, fused=()):
        cls, c = layer.cls, layer.config
        if cls in REFUSED:
            raise _refuse(layer, REFUSED[cls])
        if c.get('data_format') not in (None, 'channels_last'):
            raise _refuse(layer, 'data_format %s; only channels_last imports'
                          % c.get('data_format'))
        if cls in MODELS:
            return self._model(layer.entry, layer.path, refs)
        if cls in ('Rescaling', 'Normalization'):
            return self._input_layer(layer, refs)
        if cls in IDENTITY:
            return refs[0]
        name = '/'.join(layer.path)
        if cls == 'Conv2D':
            return self._conv(layer, refs, fused)
        if cls == 'DepthwiseConv2D':
            if int(c.get('depth_multiplier', 1)) != 1:
                raise _refuse(layer, 'depth_multiplier %s; only 1 imports'
                              % c.get('depth_multiplier'))
            k_h, k_w = _pair(c['kernel_size'])
            d_h, d_w = _pair(c.get('strides', 1))
            self._check_dilation(layer)
            use_bias = bool(c.get('use_bias', True))
            ref = self._call(layer, 'depthwise_conv', refs, k_h=k_h, k_w=k_w, d_h=d_h, d_w=d_w,
                             mode=_padding(layer), use_bias=use_bias, name=name)
            self._assign(layer, [name + '/depthwise_kernel'] + ([name + '/bias'] if use_bias
                                                                else []))
            return self._activate(layer, ref, c)
        if cls == 'BatchNormalization':
            if not _bn_axis_ok(c):
                raise _refuse(layer, 'axis %s; only the channel axis (-1) imports' % c.get('axis'))
            ref = self._call(layer, 'batch_norm', refs, name=name,
                             epsilon=float(c.get('epsilon', 1e-3)))
            self._assign_bn(layer, name)
            return ref
        if cls in ('ReLU', 'Activation'):
            activation = self._activation_of(layer)
            if _activation_name(c) == 'softmax' and cls == 'Activation':
                return self._softmax(layer, refs)
            if activation is False:
                raise _refuse(layer, 'activation %s; supported: relu, relu6, linear, sigmoid, '
                              'tanh, swish/silu, hard_swish/hard_silu, hard_sigmoid, and a final '
                              'softmax' % _describe_activation(layer))
            return self._activation_call(layer, refs[0], activation)
        if cls == 'Softmax':
            return self._softmax(layer, refs)
        if cls in ('MaxPooling2D', 'AveragePooling2D'):
            k_h, k_w = _pair(c.get('pool_size', 2))
            d_h, d_w = _pair(c.get('strides') or (k_h, k_w))
            return self._call(layer, 'mpool' if cls == 'MaxPooling2D' else 'apool', refs,
                              k_h=k_h, k_w=k_w, d_h=d_h, d_w=d_w, mode=_padding(layer))
        if cls == 'GlobalAveragePooling2D':
            if c.get('keepdims'):
                raise _refuse(layer, 'keepdims=True; only the flat [batch, channels] form '
                              'imports')
            return self._call(layer, 'spatial_mean', refs)
        if cls == 'ZeroPadding2D':
            (top, bottom), (left, right) = _padding_pairs(c.get('padding', 1))
            return self._call(layer, 'pad', refs, top=top, bottom=bottom, left=left, right=right)
        if cls == 'Flatten':
            return self._call(layer, 'flatten', refs)
        if cls == 'Add':
            return self._call(layer, 'add', refs)
        if cls == 'Concatenate':
            if c.get('axis', -1) not in (-1, 3):
                raise _refuse(layer, 'axis %s; only the channel axis (-1) imports'
                              % c.get('axis'))
            return self._call(layer, 'concat', refs)
        if cls == 'Dense':
            return self._dense(layer, refs)
        raise _refuse(layer, 'the layer type has no builder op (see docs/keras-import.md for the '
                      'supported layers)')

    def _check_dilation(self, layer):
        if _pair(layer.config.get('dilation_rate', 1)) != (1, 1):
            raise _refuse(layer, 'dilation_rate %s; dilated convolutions are not supported'
                          % (layer.config.get('dilation_rate'),))
        if int(layer.config.get('groups', 1)) != 1:
            raise _refuse(layer, 'groups=%s; grouped convolutions are not supported'
                          % layer.config.get('groups'))

    def _conv(self, layer, refs, fused):
        c = layer.config
        self._check_dilation(layer)
        k_h, k_w = _pair(c['kernel_size'])
        d_h, d_w = _pair(c.get('strides', 1))
        name = '/'.join(layer.path)
        use_bias = bool(c.get('use_bias', True))
        bn = next((f for f in fused if f.cls == 'BatchNormalization'), None)
        act = next((f for f in fused if f.cls != 'BatchNormalization'), None)
        activation = self._activation_of(act) if act is not None else _activation_name(c)
        if activation is False or activation == 'softmax':
            raise _refuse(layer, 'activation %s; supported: relu, relu6, linear, sigmoid, tanh, '
                          'swish/silu, hard_swish/hard_silu, hard_sigmoid'
                          % _describe_activation(layer))
        kwargs = dict(k_h=k_h, k_w=k_w, d_h=d_h, d_w=d_w, mode=_padding(layer),
                      use_batch_norm=bn is not None, activation=activation, name=name,
                      use_bias=use_bias)
        if bn is not None:
            kwargs.update(bn_name=bn.path[-1], bn_epsilon=float(bn.config.get('epsilon', 1e-3)))
        index = len(self.deps)
        self.deps.append(int(c['filters']))
        ref = self._call(layer, 'conv', refs, _conv=index, **kwargs)
        self._assign(layer, [name + '/kernel'] + ([name + '/bias'] if use_bias else []))
        if bn is not None:
            self._assign_bn(bn, name + '/' + bn.path[-1])
        return ref

    def _assign(self, layer, names, defaults=None):
        self.assignments.append((layer, names, defaults or {}))

    def _assign_bn(self, layer, scope):
        c = layer.config
        names, defaults = [], {}
        for role, present, default in ((GAMMA, c.get('scale', True), 1.0),
                                       (BETA, c.get('center', True), 0.0),
                                       (MOVING_MEAN, True, None), (MOVING_VARIANCE, True, None)):
            if present:
                names.append('%s/%s' % (scope, role))
            else:
                defaults['%s/%s' % (scope, role)] = default
        self._assign(layer, names, defaults)

    def _activate(self, layer, ref, config):
        activation = _activation_name(config)
        if activation is None:
            return ref
        if activation is False or activation == 'softmax':
            raise _refuse(layer, 'activation %s is not supported here'
                          % _describe_activation(layer))
        return self._activation_call(layer, ref, activation)

    def _activation_call(self, layer, ref, activation):
        if activation is None:
            return ref
        if activation == 'relu':
            return self._call(layer, 'relu', [ref])
        return self._call(layer, 'activation', [ref], activation=activation)

    def _softmax(self, layer, refs):
        if layer.config.get('axis', -1) not in (-1, 1):
            raise _refuse(layer, 'a softmax over axis %s' % layer.config.get('axis'))
        self.softmaxes.append((refs[0], layer))  # dropped if on the classifier (checked at the end)
        return refs[0]

    def _dense(self, layer, refs):
        c = layer.config
        name = '/'.join(layer.path)
        activation = _activation_name(c)
        if activation is False:
            raise _refuse(layer, 'activation %s is not supported' % _describe_activation(layer))
        ref = self._call(layer, 'affine', refs, num_out=int(c['units']),
                         activation='linear' if activation in (None, 'softmax') else activation,
                         name=name)
        if activation == 'softmax':  # dropped if this is the classifier (checked at the end)
            self.softmaxes.append((ref, layer))
        use_bias = bool(c.get('use_bias', True))
        self._assign(layer, [name + '/kernel'] + ([name + '/bias'] if use_bias else []),
                     {} if use_bias else {name + '/bias': 0.0})
        return ref

    def _input_layer(self, layer, refs):
        """Rescaling / Normalization on the image itself: folded into the input's mean and std."""
        if refs[0] != IMAGE:
            raise _refuse(layer, 'input scaling imports only at the model\'s start, where it '
                          'becomes the input\'s mean and std')
        c = layer.config
        if layer.cls == 'Rescaling':
            scale, offset = _channels(c.get('scale', 1.0)), _channels(c.get('offset', 0.0))
            self.scale, self.shift = self.scale * scale, self.shift * scale + offset
            return IMAGE
        if c.get('invert'):
            raise _refuse(layer, 'invert=True (a de-normalization) is not supported')
        if c.get('axis', [-1]) not in ([-1], -1, [3], 3):
            raise _refuse(layer, 'axis %s; only the channel axis (-1) imports' % c.get('axis'))
        mean, variance = c.get('mean'), c.get('variance')
        if mean is None or variance is None:
            arrays = self.file.layer_weights(layer.path)
            if len(arrays) < 2:
                raise _refuse(layer, 'it has neither a mean and variance in its config nor '
                              'adapted weights')
            mean, variance = arrays[0], arrays[1]
        mean, variance = _channels(mean), _channels(variance)
        std = np.maximum(np.sqrt(variance), 1e-7)  # Keras 3: max(sqrt(variance), epsilon)
        self.scale, self.shift = self.scale / std, (self.shift - mean) / std
        return IMAGE

    # -- weights --------------------------------------------------------------------------------
    def weights(self, trace):
        """{builder variable name: float32 array} from the Keras file, every array checked
        against the trace's shape; one UserError naming the layer otherwise."""
        shapes, out = trace.shapes, {}
        for layer, names, defaults in self.assignments:
            arrays = self.file.layer_weights(layer.path)
            if len(arrays) != len(names):
                raise UserError('%s: Keras layer %s (%s) has %d weight arrays in the file, its '
                                'config needs %d; the file is damaged or was not saved by Keras'
                                % (self.file.path, '/'.join(layer.path), layer.cls, len(arrays),
                                   len(names)))
            for var, array in zip(names, arrays):
                if tuple(array.shape) != tuple(shapes[var]):
                    raise UserError('%s: Keras layer %s (%s) has a weight of shape %s where its '
                                    'config needs %s (%s); the file is damaged'
                                    % (self.file.path, '/'.join(layer.path), layer.cls,
                                       list(array.shape), list(shapes[var]), var))
                out[var] = np.asarray(array, np.float32)
            for var, value in defaults.items():
                out[var] = np.full(shapes[var], value, np.float32)
        missing = [n for n in shapes if n not in out]
        if missing:
            raise UserError('%s: no weights for %s; the file is damaged' % (self.file.path,
                                                                          ', '.join(missing[:4])))
        return out

    def input_spec(self, size):
        if not (np.all(self.scale > 0) and np.all(np.isfinite(self.scale)) and
                np.all(np.isfinite(self.shift))):
            raise UserError('%s: the input scaling layers give a non-positive or non-finite '
                            'scale %s; only x * scale + offset with scale > 0 imports'
                            % (self.file.path, list(self.scale)))
        mean = tuple(float(v) + 0.0 for v in -self.shift / self.scale)  # no -0.0
        std = tuple(float(v) for v in 1.0 / self.scale)
        return InputSpec(size, mean, std)


def _pair(value):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError('a 2-D size %r' % (value,))
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _padding_pairs(value):
    if isinstance(value, (int, float)):
        return (int(value), int(value)), (int(value), int(value))
    h, w = value
    h = _pair(h) if isinstance(h, (list, tuple)) else (int(h), int(h))
    w = _pair(w) if isinstance(w, (list, tuple)) else (int(w), int(w))
    return h, w


def _padding(layer):
    padding = str(layer.config.get('padding', 'valid')).lower()
    if padding not in ('same', 'valid'):
        raise _refuse(layer, 'padding %r; same and valid import' % padding)
    return padding.upper()


def _channels(value):
    """A scalar or per-channel value (any nesting of a 3-vector) as a float64 [3]."""
    array = np.asarray(value, np.float64).reshape(-1)
    if array.size == 1:
        return np.repeat(array, 3)
    if array.size != 3:
        raise ValueError('a per-channel value of %d entries for 3 channels' % array.size)
    return array


def _bn_axis_ok(config):
    return config.get('axis', -1) in (-1, 3, [-1], [3])


def _activation_name(config):
    """The builder name of a layer's `activation` (None: linear), 'softmax', or False."""
    value = config.get('activation', 'linear')
    if value is None:
        return None
    if not isinstance(value, str):
        return False
    if value == 'softmax':
        return 'softmax'
    return ACTIVATIONS.get(value, False)


def _describe_activation(layer):
    c = layer.config
    if layer.cls == 'ReLU':
        return 'ReLU(max_value=%s, negative_slope=%s, threshold=%s)' % (
            c.get('max_value'), c.get('negative_slope'), c.get('threshold'))
    return repr(c.get('activation'))[:80]


def import_keras(path, image_size=None):
    """Read a Keras model file into a KerasNetwork (nothing written)."""
    keras_file = read_keras_file(path)
    importer = _Importer(keras_file, image_size)
    try:
        shape, _ = importer.run()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            RecursionError) as e:
        raise UserError('%s: the model config is not one Keras writes (%s: %s); nothing was '
                        'written' % (path, type(e).__name__, str(e)[:160]))
    if not importer.keras3:
        for call in importer.calls:
            if call.kwargs.get('activation') == 'hard_sigmoid':
                raise UserError('%s: hard_sigmoid of Keras %s (0.2 x + 0.5) differs from Keras 3\'s, '
                                'the one supported; nothing was written'
                                % (path, keras_file.keras_version))
    if not importer.deps:
        raise UserError('%s: the model has no Conv2D layer, so there are no filters to prune; '
                        'nothing was written' % path)
    trace = importer.builder.trace
    network = KerasNetwork(str(keras_file.config['config'].get('name') or 'model'),
                           importer.calls, tuple(importer.deps), importer.num_classes, shape,
                           importer.input_spec(shape[0]), importer.weights(trace),
                           bool(importer.softmaxes),
                           '%s, Keras %s' % ('.keras' if keras_file.format == 'keras'
                                             else 'legacy h5',
                                             keras_file.keras_version or 'unknown'))
    check = NetworkBuilder(image_shape=shape)
    network.add_inference(check, network.default_deps, network.num_classes)
    if check.trace.shapes != trace.shapes:  # the replayed calls are the traced ones
        raise AssertionError('the recorded builder calls do not rebuild the traced network')
    return network


def import_keras_file(path, out, log=print, image_size=None, normalization=None):
    """`import-keras`: read `path`, write `out` (weights, deps, input spec and the network's
    description, so the file alone rebuilds it); returns the KerasNetwork."""
    if os.path.isdir(out):
        raise UserError('--out %s is a directory; name the weights file to write' % out)
    network = import_keras(path, image_size)
    spec = spec_with(network.input_spec, None, normalization)
    network = dataclasses.replace(network, input_spec=spec)
    try:
        hdf5_io.save_hdf5(out, network.weights, network.default_deps, input_spec=spec,
                          network=network.model_spec().network)
    except OSError as e:
        raise UserError(cannot_write_message(out, e.strerror or e)) from None
    log('imported %s (%s) into %s: %d conv layers at widths %s, %d classes, input %s%s'
        % (path, network.source, out, len(network.default_deps), list(network.default_deps),
           network.num_classes, _describe(spec), '; the final softmax was dropped (logits out)'
           if network.softmax_dropped else ''))
    return network


def _describe(spec):
    if spec.normalization_name != 'custom':
        return spec.describe()
    return '%dx%d, mean %s, std %s' % (spec.image_size, spec.image_size,
                                       [round(v, 4) for v in spec.mean],
                                       [round(v, 4) for v in spec.std])
