"""A network description that is data: a model's builder calls as JSON, recorded by tracing its
`add_inference` (`describe`), checked without running any code (`check_description`) and replayed
on any builder (`replay`); weight files and run records carry it.

Format `tf_benchmarks.network/1`: {"format", "name", "image_shape": [H, W, C], "default_deps",
"num_classes", "builder": {setting: value} (optional), "calls": [...]}. Call k is {"op": a builder
method of DESCRIBABLE_OPS, "scope": the variable scope active at the call ("v0/cg", "" for none),
"in": [node ids], "args": {parameter: value}} and produces node k + 1; node 0 is the input image,
the last call's output the logits. A value is a JSON scalar, a list of scalars, {"width": i} (the
call's `deps[i]`) or {"classes": true} (the network's class count).
"""

import contextlib
import functools
import hashlib
import inspect
import json
import math
import re

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.network.builder import NetworkBuilder, Node

FORMAT = 'tf_benchmarks.network/1'
# The builder methods a description may call; a new builder method becomes describable by adding
# its name here (its node inputs are the parameters `input_layer` and `nodes`).
DESCRIBABLE_OPS = ('conv', 'depthwise_conv', 'batch_norm', 'relu', 'activation', 'mpool', 'apool',
                   'pad', 'concat', 'add', 'spatial_mean', 'flatten', 'affine')
# Builder attributes a model may set before its first call (sres50: bn_epsilon).
BUILDER_SETTINGS = ('bn_epsilon', 'bn_decay')
NODE_PARAMS = ('input_layer', 'nodes')
MAX_BYTES = 4 << 20       # a description read from a file
MAX_CALLS = 100000
MAX_WIDTH = 1 << 16
MAX_LAYERS = 100000
MAX_CLASSES = 1 << 20
MAX_STRING = 256
MAX_LIST = 64
_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
_SCOPE = re.compile(r'^(?:[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)?$')
_TOP_KEYS = ('format', 'name', 'image_shape', 'default_deps', 'num_classes', 'calls')
_CALL_KEYS = ('op', 'scope', 'in', 'args')


class Width(int):
    """A width the model was given: deps[index]. Arithmetic on it gives a plain int (its index is
    then lost, which describe() reports)."""

    def __new__(cls, value, index):
        self = super().__new__(cls, value)
        self.index = index
        return self


class Classes(int):
    """The class count the model was given."""


def _signature(op):
    return inspect.signature(getattr(NetworkBuilder, op))


# -- recording ----------------------------------------------------------------------------------
class _Refused(Exception):
    """A call that cannot be described; describe() names the model and the call."""


def _encode(value, where):
    if isinstance(value, Width):
        return {'width': value.index}
    if isinstance(value, Classes):
        return {'classes': True}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused('%s is %r, not a finite number' % (where, value))
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, where) for v in value]
    raise _Refused('%s is a %s; a description holds numbers, strings, widths and lists of them'
                   % (where, type(value).__name__))


def _recorded(op):
    def method(self, *args, **kwargs):
        base = getattr(super(RecordingBuilder, self), op)
        if self._depth:  # a builder method calling another one: part of the outer call
            return base(*args, **kwargs)
        bound = _signature(op).bind(self, *args, **kwargs)
        call = {'op': op, 'scope': self.current_scope(), 'in': [], 'args': {}}
        where = 'calls[%d] (%s)' % (len(self.calls), op)
        for name, value in list(bound.arguments.items())[1:]:
            if name == 'nodes':
                call['in'] = [self._node_id(n, where) for n in value]
            elif name == 'input_layer':
                call['in'] = [self._node_id(self.top_layer if value is None else value, where)]
            else:
                call['args'][name] = _encode(value, '%s: argument %s' % (where, name))
        if 'input_layer' in _signature(op).parameters and not call['in']:
            call['in'] = [self._node_id(self.top_layer, where)]
        self._depth += 1
        try:
            out = base(*args, **kwargs)
        finally:
            self._depth -= 1
        self.calls.append(call)
        self._nodes.append(out)
        self._ids[id(out)] = len(self._nodes) - 1
        return out
    method.__name__ = op
    return method


class RecordingBuilder(NetworkBuilder):
    """A tracing builder that also records every top-level describable call."""

    def __init__(self, image_shape):
        super().__init__(image_shape=tuple(image_shape))
        self.calls = []
        self.settings = {}
        self._depth = 0
        self._nodes = [self.top_layer]
        self._ids = {id(self.top_layer): 0}

    def __setattr__(self, name, value):
        if name in BUILDER_SETTINGS and 'calls' in self.__dict__:
            if self.calls and self.settings.get(name, getattr(self, name)) != value:
                raise _Refused('cnn.%s is set after the first layer; set it before' % name)
            self.settings[name] = _encode(value, 'cnn.%s' % name)
        super().__setattr__(name, value)

    def _node_id(self, node, where):
        index = self._ids.get(id(node))
        if index is None or self._nodes[index] is not node:
            raise _Refused('%s: its input is not the output of an earlier describable builder call '
                           '(a tensor made another way, cnn.top_layer set by hand, or a builder '
                           'method outside %s)' % (where, ', '.join(DESCRIBABLE_OPS)))
        return index


for _op in DESCRIBABLE_OPS:
    setattr(RecordingBuilder, _op, _recorded(_op))
del _op


def _perturbed(trace, deps):
    """deps with every channel group one filter wider (tied layers stay tied)."""
    return [deps[trace.root_of(i)] + 1 for i in range(len(deps))]


def describe(add_inference, default_deps, num_classes, name, image_shape=(32, 32, 3)):
    """The description of a model's builder calls; a UserError naming the model and the call if
    they cannot be described: a call outside DESCRIBABLE_OPS, an argument that is not data, a width
    computed from deps[i] instead of deps[i] itself (found by replaying at other widths)."""
    default_deps = [int(d) for d in default_deps]
    builder = RecordingBuilder(image_shape)
    widths = [Width(d, i) for i, d in enumerate(default_deps)]
    try:
        logits = add_inference(builder, widths, Classes(num_classes))
        if not builder.calls or logits is not builder._nodes[-1]:
            raise _Refused('add_inference must return the output of its last builder call (the '
                           'logits)')
    except _Refused as e:
        raise UserError('%s cannot be described: %s' % (name, e))
    desc = {'format': FORMAT, 'name': name, 'image_shape': [int(s) for s in image_shape],
            'default_deps': default_deps, 'num_classes': int(num_classes), 'calls': builder.calls}
    if builder.settings:
        desc['builder'] = dict(builder.settings)
    check_description(desc, name)
    traced = trace_of(desc)
    if len(traced.convs) != len(default_deps):
        raise UserError('%s cannot be described: it has %d conv layers and %d widths (DEFAULT_DEPS); '
                        'give every conv layer its own entry of deps, in the order the layers are '
                        'built' % (name, len(traced.convs), len(default_deps)))
    _check_widths(name, traced, traced, default_deps)
    _check_at_other_widths(desc, add_inference, traced)
    return desc


def _check_widths(name, traced, model_trace, deps):
    """Conv layer i has deps[i] filters; else a UserError naming the first layer that has not."""
    for conv, theirs in zip(traced.convs, model_trace.convs):
        if conv.out_channels != deps[conv.index] or theirs.out_channels != deps[conv.index]:
            raise UserError(
                '%s cannot be described: conv layer %d (%s) has %d filters when deps[%d] is %d: '
                'its width is computed from the widths or fixed, not passed as deps[i] itself; '
                'give every conv layer its own entry of deps (num_out=deps[i])'
                % (name, conv.index, theirs.kernel, theirs.out_channels, conv.index,
                   deps[conv.index]))


def _check_at_other_widths(desc, add_inference, traced):
    """The model and its description agree at other widths and another class count; else the
    first conv or FC layer where they do not is named."""
    deps, classes = _perturbed(traced, desc['default_deps']), desc['num_classes'] + 1
    model = NetworkBuilder(image_shape=tuple(desc['image_shape']))
    try:
        add_inference(model, deps, classes)
    except UserError:
        raise
    except Exception as e:  # the model's own code
        raise UserError('%s cannot be described: it fails when every channel group is one filter '
                        'wider (%s), so its widths are not only its deps' % (desc['name'], e))
    replayed = trace_of(desc, deps, classes)
    if len(model.trace.convs) != len(replayed.convs):
        raise UserError('%s cannot be described: it has %d conv layers at other widths and %d at '
                        'its DEFAULT_DEPS' % (desc['name'], len(model.trace.convs),
                                              len(replayed.convs)))
    _check_widths(desc['name'], replayed, model.trace, deps)
    for ours, theirs in zip(replayed.affines, model.trace.affines):
        if ours.out_features != theirs.out_features:
            raise UserError('%s cannot be described: FC layer %s has %d outputs where the class '
                            'count gives %d; pass num_classes itself (or a fixed number)'
                            % (desc['name'], theirs.kernel, theirs.out_features,
                               ours.out_features))
    if replayed.shapes != model.trace.shapes:
        raise UserError('%s cannot be described: at other widths its variables differ from the '
                        'replayed description\'s' % desc['name'])


# -- checking (no code runs) --------------------------------------------------------------------
def _bad(source, where, problem):
    return UserError('%s: %s%s; a network description (format %s) is data written by this '
                     'project; pass another file or --model'
                     % (source, where + ': ' if where else '', problem, FORMAT))


def _int(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_value(value, where, source, num_deps, depth=0):
    if isinstance(value, dict):
        if value == {'classes': True}:
            return
        if set(value) != {'width'} or not _int(value['width'], 0, num_deps - 1):
            raise _bad(source, where, 'a mapping value is {"width": i} with 0 <= i < %d or '
                       '{"classes": true}, got %s' % (num_deps, _shown(value)))
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not abs(value) <= 1 << 31:
            raise _bad(source, where, 'the integer %d is out of range' % value)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(source, where, 'a number is not finite')
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _bad(source, where, 'a string is longer than %d characters' % MAX_STRING)
        return
    if isinstance(value, list) and depth == 0:
        if len(value) > MAX_LIST:
            raise _bad(source, where, 'a list is longer than %d entries' % MAX_LIST)
        for v in value:
            _check_value(v, where, source, num_deps, depth + 1)
        return
    raise _bad(source, where, 'a value is a number, a string, a width or a list of them, got %s'
               % _shown(value))


def _shown(value):
    text = json.dumps(value) if not isinstance(value, (set, bytes)) else repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def check_description(desc, source):
    """`desc` if it is a well-formed description, else one UserError naming `source` and the entry
    (`calls[17]: ...`). Runs no code: ops are names looked up in DESCRIBABLE_OPS."""
    if not isinstance(desc, dict):
        raise _bad(source, '', 'it is not a JSON object')
    if desc.get('format') != FORMAT:
        raise _bad(source, 'format', 'expected %r, got %s' % (FORMAT, _shown(desc.get('format'))))
    unknown = sorted(set(desc) - set(_TOP_KEYS) - {'builder'})
    if unknown:
        raise _bad(source, unknown[0], 'not a field of a description')
    for key in _TOP_KEYS:
        if key not in desc:
            raise _bad(source, '', 'it has no %s' % key)
    if not isinstance(desc['name'], str) or not _NAME.match(desc['name']):
        raise _bad(source, 'name', 'a name is 1 to 64 letters, digits, _, - and ., got %s'
                   % _shown(desc['name']))
    shape = desc['image_shape']
    if not (isinstance(shape, list) and len(shape) == 3 and _int(shape[0], 1, 4096) and
            _int(shape[1], 1, 4096) and _int(shape[2], 1, 64)):
        raise _bad(source, 'image_shape', '[H, W, C] with H, W in 1..4096 and C in 1..64, got %s'
                   % _shown(shape))
    deps = desc['default_deps']
    if not isinstance(deps, list) or not 1 <= len(deps) <= MAX_LAYERS:
        raise _bad(source, 'default_deps', 'a list of 1 to %d widths' % MAX_LAYERS)
    for i, d in enumerate(deps):
        if not _int(d, 1, MAX_WIDTH):
            raise _bad(source, 'default_deps[%d]' % i, 'a width is a whole number from 1 to %d, '
                       'got %s' % (MAX_WIDTH, _shown(d)))
    if not _int(desc['num_classes'], 1, MAX_CLASSES):
        raise _bad(source, 'num_classes', 'a whole number from 1 to %d' % MAX_CLASSES)
    settings = desc.get('builder', {})
    if not isinstance(settings, dict):
        raise _bad(source, 'builder', 'a mapping of builder settings')
    for key, value in settings.items():
        if key not in BUILDER_SETTINGS or not isinstance(value, (int, float)) or \
                isinstance(value, bool) or not math.isfinite(value) or not 0 < value < 1:
            raise _bad(source, 'builder.%s' % key, 'the settings are %s, numbers in (0, 1)'
                       % ', '.join(BUILDER_SETTINGS))
    calls = desc['calls']
    if not isinstance(calls, list) or not 1 <= len(calls) <= MAX_CALLS:
        raise _bad(source, 'calls', 'a list of 1 to %d calls' % MAX_CALLS)
    for k, call in enumerate(calls):
        _check_call(call, k, source, len(deps))
    return desc


def _scope_name(text):
    """A variable scope: names of letters, digits, _, - and . (not . or ..) separated by /."""
    return isinstance(text, str) and len(text) <= MAX_STRING and bool(_SCOPE.match(text)) and \
        not {'.', '..'} & set(text.split('/'))


def _check_call(call, k, source, num_deps):
    where = 'calls[%d]' % k
    if not isinstance(call, dict) or sorted(call) != sorted(_CALL_KEYS):
        raise _bad(source, where, 'a call is {"op", "scope", "in", "args"}, got %s' % _shown(call))
    op = call['op']
    if op not in DESCRIBABLE_OPS:
        raise _bad(source, where, 'op %s is not one of %s' % (_shown(op), ', '.join(DESCRIBABLE_OPS)))
    where = '%s (%s)' % (where, op)
    if not _scope_name(call['scope']):
        raise _bad(source, where, 'scope %s is not a variable scope (names of letters, digits, _, '
                   '- and . separated by /)' % _shown(call['scope']))
    params = _signature(op).parameters
    ids = call['in']
    if not isinstance(ids, list) or len(ids) > MAX_CALLS:
        raise _bad(source, where, '"in" is a list of node ids')
    for i in ids:
        if not _int(i, 0, k):
            raise _bad(source, where, 'input %s is not an earlier node (0 is the image, call j '
                       'makes node j + 1, so ids are 0..%d here)' % (_shown(i), k))
    wanted = (1, MAX_CALLS) if 'nodes' in params else (1, 1) if 'input_layer' in params else (0, 0)
    if not wanted[0] <= len(ids) <= wanted[1]:
        raise _bad(source, where, 'takes %s, got %d inputs'
                   % ('at least one input' if 'nodes' in params else
                      'one input' if wanted[1] else 'no input', len(ids)))
    if not isinstance(call['args'], dict):
        raise _bad(source, where, '"args" is a mapping of parameters')
    for name, value in call['args'].items():
        if name not in params or name in NODE_PARAMS or name == 'self':
            raise _bad(source, where, '%s has no parameter %s' % (op, _shown(name)))
        if name == 'name' and value is not None and not (value and _scope_name(value)):
            raise _bad(source, where, 'name %s is not a variable scope name' % _shown(value))
        _check_value(value, '%s: argument %s' % (where, name), source, num_deps)


# -- replaying ----------------------------------------------------------------------------------
def _decode(value, deps, num_classes):
    if isinstance(value, dict):
        return num_classes if 'classes' in value else deps[value['width']]
    if isinstance(value, list):
        return tuple(_decode(v, deps, num_classes) for v in value)
    return value


def replay(desc, cnn, deps, num_classes, source=None):
    """Run a checked description's calls on the builder `cnn` at widths `deps`; returns the
    logits node. A call the builder refuses (an add of differently laid out channels) is a
    UserError naming it."""
    for name, value in sorted(desc.get('builder', {}).items()):
        setattr(cnn, name, value)
    nodes = [cnn.top_layer]
    for k, call in enumerate(desc['calls']):
        params = _signature(call['op']).parameters
        kwargs = {name: _decode(v, deps, num_classes) for name, v in call['args'].items()}
        if 'nodes' in params:
            kwargs['nodes'] = [nodes[i] for i in call['in']]
        elif 'input_layer' in params:
            kwargs['input_layer'] = nodes[call['in'][0]]
        scope = cnn.variable_scope(call['scope']) if call['scope'] else contextlib.nullcontext()
        try:
            with scope:
                out = getattr(cnn, call['op'])(**kwargs)
        except UserError:
            raise
        except Exception as e:  # the builder refused the data: one line, never a traceback
            raise UserError('%s: calls[%d] (%s) cannot be built: %s' % (
                source or desc['name'], k, call['op'], str(e).splitlines()[0] if str(e) else
                type(e).__name__))
        if not isinstance(out, Node):
            raise UserError('%s: calls[%d] (%s) made no tensor' % (source or desc['name'], k,
                                                                   call['op']))
        nodes.append(out)
    return nodes[-1]


def trace_of(desc, deps=None, num_classes=None, image_shape=None, source=None):
    """The NetworkTrace of a checked description (at its defaults where not given)."""
    builder = NetworkBuilder(image_shape=tuple(image_shape or desc['image_shape']))
    replay(desc, builder, list(desc['default_deps'] if deps is None else deps),
           desc['num_classes'] if num_classes is None else num_classes, source)
    return builder.trace


def make_add_inference(desc, source=None):
    """add_inference(cnn, deps, num_classes) that replays `desc`."""
    return functools.partial(_replay_inference, desc, source)


def _replay_inference(desc, source, cnn, deps, num_classes):
    return replay(desc, cnn, deps, num_classes, source)


# -- bytes --------------------------------------------------------------------------------------
def to_bytes(desc):
    """Canonical UTF-8 JSON (sorted keys, no spaces): equal descriptions, equal bytes."""
    return json.dumps(desc, sort_keys=True, separators=(',', ':'), allow_nan=False).encode('utf-8')


def digest(desc):
    return hashlib.sha256(to_bytes(desc)).hexdigest()


def from_bytes(data, source):
    """A checked description from UTF-8 JSON bytes; any failure is one UserError naming `source`."""
    if len(data) > MAX_BYTES:
        raise _bad(source, '', 'it is larger than %d bytes' % MAX_BYTES)
    try:
        desc = json.loads(bytes(data).decode('utf-8'), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError, OverflowError) as e:
        raise _bad(source, '', 'it is not UTF-8 JSON (%s)' % (str(e).splitlines()[0][:80]
                                                              if str(e) else type(e).__name__))
    return check_description(desc, source)


def _no_constant(name):
    raise ValueError('%s is not a number' % name)


def read_file(path):
    """A description from a JSON file (`--model net.json`)."""
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError('cannot read the network description %s: %s' % (path, e.strerror or e))
    return from_bytes(data, path)
