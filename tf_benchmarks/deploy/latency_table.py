"""The per-layer latency table of AOFP's latency target: every conv layer (with its bias and ReLU,
as the export runs it: BN folded) timed alone on this machine at a grid of input and output
channel counts, keyed by its shape (kernel, stride, padding, input and output HxW, batch) and its
widths, plus the whole model at the table's widths; and the prediction the search stops on.

Grid: for each conv, the output channels max(1, round(f * width)) for f = 1/8, 2/8, ..., 8/8 of its
width in the table's model, the input channels likewise of its input width (the first conv's input,
the image, is fixed); convs of the same shape share one grid (the union of theirs). Each entry is
the median of `calls` timed calls (interleaved in rounds over all entries, after a warm-up). A
prediction at other widths interpolates each conv bilinearly in (input, output) channels between
the grid points and clamps outside them (below the smallest point: that point's time, so the
prediction errs slow), and is

    predicted(widths) = rest + sum over convs of t(conv at widths)
    rest = whole model measured at the table's widths - sum of t(conv at the table's widths)

(`rest`: pooling, the FC layers, normalization and each call's fixed cost, taken as constant).
The table also holds off-grid probes one channel below the largest multiple of 8 of each grid, to
show whether multiples of 8 are faster."""

import json
import math
import os
import statistics
import time

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy.export import build_inference_graph
from tf_benchmarks.deploy.latency import machine
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.files.atomic import write_json
from tf_benchmarks.pruning.file_model import read_model_file

FORMAT = 'latency-table-v1'
FRACTIONS = tuple(i / 8.0 for i in range(1, 9))
MIN_CALLS = 50         # per entry, unless the caller allows fewer (tests)
ROUNDS = 5             # each entry's calls are spread over this many passes over all entries
WARMUP = 2
MAX_TABLE_BYTES = 64 * 2 ** 20
PADDINGS = ('SAME', 'VALID', 'SAME_RESNET')
RUNTIME = 'tensorflow session (the SavedModel\'s graph and kernels), one thread per core'


def grid(width):
    """The channel counts measured for a layer `width` wide: max(1, round(f * width))."""
    return sorted({max(1, int(f * width + 0.5)) for f in FRACTIONS})


def _input_hw(conv):
    (oh, ow), (kh, kw), (sh, sw) = conv.out_hw, conv.kernel_size, conv.strides
    if conv.padding == 'VALID':
        return [(oh - 1) * sh + kh, (ow - 1) * sw + kw]
    return [oh * sh, ow * sw]


def shape_key(conv, batch):
    """What a conv's time depends on besides its widths."""
    return (tuple(conv.kernel_size), tuple(conv.strides), conv.padding, tuple(_input_hw(conv)),
            tuple(conv.out_hw), int(batch))


def _key_text(key):
    (kh, kw), (sh, sw), padding, (ih, iw), (oh, ow), batch = key
    return 'conv %dx%d stride %d,%d %s, input %dx%d, output %dx%d, batch %d' % (
        kh, kw, sh, sw, padding, ih, iw, oh, ow, batch)


def _trace(model, deps, num_classes, image_size):
    return model.trace(list(deps), num_classes, image_shape=(image_size, image_size, 3))


def plan(model, deps, num_classes, image_size, batch):
    """{shape key: (input channel grid, output channel grid, [conv indices])}."""
    groups = {}
    for conv in _trace(model, deps, num_classes, image_size).convs:
        ins, outs, layers = groups.setdefault(shape_key(conv, batch), (set(), set(), []))
        ins.update([conv.in_channels] if conv.index == 0 else grid(conv.in_channels))
        outs.update(grid(conv.out_channels))
        layers.append(conv.index)
    return {k: (sorted(i), sorted(o), l) for k, (i, o, l) in groups.items()}


def _probes(ins, outs):
    """(in, out) off the grid: one below the largest multiple of 8 of each axis."""
    out = []
    for axis, values in ((0, ins), (1, outs)):
        eights = [v for v in values if v % 8 == 0 and v >= 8]
        if eights:
            point = [max(ins), max(outs)]
            point[axis] = eights[-1] - 1
            if point[axis] not in values:
                out.append(tuple(point))
    return out


def _conv_op(key, c_in, c_out):
    (kh, kw), (sh, sw), padding, (ih, iw), _, batch = key
    x = tf.Variable(tf.random.normal((batch, ih, iw, c_in)), trainable=False)
    k = tf.Variable(tf.random.normal((kh, kw, c_in, c_out),
                                     stddev=math.sqrt(2.0 / (kh * kw * c_in))), trainable=False)
    b = tf.Variable(tf.zeros((c_out,)), trainable=False)
    if padding == 'SAME_RESNET' and (sh, sw) != (1, 1):
        x = tf.pad(x, [[0, 0], [(kh - 1) // 2, kh // 2], [(kw - 1) // 2, kw // 2], [0, 0]])
        padding = 'VALID'
    elif padding == 'SAME_RESNET':
        padding = 'SAME'
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, [1, sh, sw, 1], padding), b)).op


def random_weights(trace, seed=0):
    """Weights of the right shapes for timing (the values do not change the speed)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, info in trace.variables.items():
        if name.endswith(('moving_variance', 'gamma')):
            value = rng.uniform(0.5, 1.5, info.shape)
        elif len(info.shape) == 4:
            value = rng.normal(0, math.sqrt(2.0 / np.prod(info.shape[:3])), info.shape)
        else:
            value = rng.normal(0, 0.1, info.shape)
        weights[name] = value.astype(np.float32)
    return weights


class _Timed:
    """A callable timed over rounds: its calls' durations accumulate in `times`."""

    def __init__(self, run):
        self.run = run
        self.times = []

    def warm_up(self):
        for _ in range(WARMUP):
            self.run()

    def time(self, calls):
        for _ in range(calls):
            start = time.perf_counter()
            self.run()
            self.times.append(time.perf_counter() - start)

    def median_ms(self):
        return 1000 * statistics.median(self.times)


class _WholeModel:
    """A model at some widths in a session of its own, timed on random uint8 images."""

    def __init__(self, model, deps, num_classes, spec, batch):
        graph, images, logits, _, builder = build_inference_graph(
            model, deps, random_weights(model.trace(list(deps), num_classes)), num_classes, spec)
        self.session = tf.Session(graph=graph, config=tf_session.session_config())
        with graph.as_default():
            self.session.run(tf.global_variables_initializer())
            builder.load(self.session)
        feed = {images: np.random.default_rng(0).integers(
            0, 256, (batch, spec.image_size, spec.image_size, 3)).astype(np.uint8)}
        self.timed = _Timed(lambda: self.session.run(logits.op, feed))

    def close(self):
        self.session.close()


def _interleaved(timed, calls):
    """Warm up every _Timed, then give each its calls in ROUNDS passes over all of them."""
    for t in timed:
        t.warm_up()
    rounds = min(ROUNDS, calls)
    for r in range(rounds):
        share = calls // rounds + (1 if r < calls % rounds else 0)
        for t in timed:
            t.time(share)


def measure_whole(model, deps_list, num_classes, spec, batch, calls):
    """Median ms per call of the whole model at each widths of `deps_list`, interleaved."""
    wholes = [_WholeModel(model, deps, num_classes, spec, batch) for deps in deps_list]
    try:
        _interleaved([w.timed for w in wholes], calls)
        return [w.timed.median_ms() for w in wholes]
    finally:
        for w in wholes:
            w.close()


def measure_table(model, deps, num_classes, spec, batch, calls, log=print):
    """The table document of `model` at `deps` (every grid entry and the whole model)."""
    groups = plan(model, deps, num_classes, spec.image_size, batch)
    graph = tf.Graph()
    points = []   # (key, in, out, probe)
    with graph.as_default():
        ops = []
        for key, (ins, outs, _) in groups.items():
            for point in [(i, o, False) for i in ins for o in outs] + \
                    [(i, o, True) for i, o in _probes(ins, outs)]:
                points.append((key,) + point)
                ops.append(_conv_op(key, point[0], point[1]))
        init = tf.global_variables_initializer()
    log('latency-table: %s at widths %s, batch %d: %d grid entries and %d probes in %d shape '
        'groups, %d calls each' % (model.name, list(deps), batch,
                                   sum(1 for p in points if not p[3]),
                                   sum(1 for p in points if p[3]), len(groups), calls))
    session = tf.Session(graph=graph, config=tf_session.session_config())
    whole = _WholeModel(model, deps, num_classes, spec, batch)
    try:
        session.run(init)
        timed = [_Timed((lambda op: lambda: session.run(op))(op)) for op in ops]
        _interleaved(timed + [whole.timed], calls)
    finally:
        session.close()
        whole.close()
    entries, probes = [], []
    for (key, c_in, c_out, probe), t in zip(points, timed):
        (kh, kw), (sh, sw), padding, input_hw, output_hw, b = key
        entry = dict(kind='conv', kernel=[kh, kw], stride=[sh, sw], padding=padding,
                     input_hw=list(input_hw), output_hw=list(output_hw), batch=b,
                     layers=groups[key][2], **{'in': c_in, 'out': c_out},
                     ms=t.median_ms(), calls=len(t.times))
        (probes if probe else entries).append(entry)
    return {'format': FORMAT, 'model': model.name, 'widths': [int(d) for d in deps],
            'num_classes': int(num_classes), 'image_size': spec.image_size, 'batch': int(batch),
            'calls': int(calls), 'runtime': RUNTIME, 'machine': machine(),
            'measured': time.strftime('%Y-%m-%dT%H:%M:%S'), 'whole_ms': whole.timed.median_ms(),
            'rule': __doc__.split('\n\n')[1].replace('\n', ' ').strip(),
            'entries': entries, 'probes': probes}


def write_table_from_file(path, out, batch, calls, model_name=None, log=print):
    """`latency-table FILE.hdf5 --out TABLE.json`: the table of FILE's model at its widths."""
    mf = read_model_file(path, model_name)
    document = measure_table(mf.model, mf.deps, mf.num_classes, mf.input_spec, batch, calls, log)
    document['source'] = path
    write_json(out, document)
    table = LatencyTable(document, out)
    log('latency-table: wrote %s: whole model %.3f ms at batch %d (the table predicts %.3f ms); %s'
        % (out, document['whole_ms'], batch, table.predict(mf.model, mf.deps)['ms'],
           table.alignment_text()))
    return table


# -- reading a table (an untrusted file) ----------------------------------------------------------

class _Bad(ValueError):
    pass


def _positive_int(value, where):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Bad('%s is %r, not a positive integer' % (where, value))
    return value


def _positive_number(value, where):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or \
            not math.isfinite(value) or value <= 0:
        raise _Bad('%s is %r, not a finite positive number' % (where, value))
    return float(value)


def _pair(value, where):
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad('%s is %r, not a pair of positive integers' % (where, value))
    return tuple(_positive_int(v, where) for v in value)


def _entry_key(entry, where):
    if not isinstance(entry, dict):
        raise _Bad('%s is not an object' % where)
    if entry.get('kind', 'conv') != 'conv':
        raise _Bad('%s.kind is %r, not conv' % (where, entry.get('kind')))
    for field in ('kernel', 'stride', 'padding', 'input_hw', 'output_hw', 'batch', 'in', 'out',
                  'ms'):
        if field not in entry:
            raise _Bad('%s has no %s' % (where, field))
    if entry['padding'] not in PADDINGS:
        raise _Bad('%s.padding is %r, not one of %s' % (where, entry['padding'],
                                                       ', '.join(PADDINGS)))
    key = (_pair(entry['kernel'], where + '.kernel'), _pair(entry['stride'], where + '.stride'),
           entry['padding'], _pair(entry['input_hw'], where + '.input_hw'),
           _pair(entry['output_hw'], where + '.output_hw'),
           _positive_int(entry['batch'], where + '.batch'))
    _positive_int(entry.get('calls'), where + '.calls')
    return (key, _positive_int(entry['in'], where + '.in'),
            _positive_int(entry['out'], where + '.out'),
            _positive_number(entry['ms'], where + '.ms'))


def _reject_constant(name):
    raise _Bad('it holds %s, not a finite number' % name)


def read_table(path):
    """A LatencyTable from `path`, checked; a UserError naming the file and the entry."""
    try:
        if os.path.getsize(path) > MAX_TABLE_BYTES:
            raise _Bad('it is larger than %d MB' % (MAX_TABLE_BYTES // 2 ** 20))
        with open(path, 'rb') as f:
            document = json.loads(f.read().decode('utf-8'), parse_constant=_reject_constant)
        return LatencyTable(document, path)
    except FileNotFoundError:
        raise UserError('latency table %s does not exist; measure one with `latency-table '
                        'FILE.hdf5 --out %s`' % (path, path))
    except (_Bad, ValueError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise UserError('%s is not a latency table of this project (%s); measure it again with '
                        '`latency-table FILE.hdf5 --out %s`' % (path, e, path))


def _bracket(values, v):
    """(i, j, w): v interpolated between values[i] and values[j] with weight w on j; clamped."""
    if v <= values[0]:
        return 0, 0, 0.0
    if v >= values[-1]:
        n = len(values) - 1
        return n, n, 0.0
    j = next(j for j, x in enumerate(values) if x >= v)
    i = j - 1
    return i, j, (v - values[i]) / float(values[j] - values[i])


class LatencyTable:
    """A checked table document: groups of entries by shape key, each a full grid."""

    def __init__(self, document, path):
        self.path = path
        if not isinstance(document, dict) or document.get('format') != FORMAT:
            raise _Bad('not a %s document' % FORMAT)
        self.document = document
        self.model_name = document.get('model')
        if not isinstance(self.model_name, str):
            raise _Bad('model is %r, not a name' % (self.model_name,))
        self.batch = _positive_int(document.get('batch'), 'batch')
        self.image_size = _positive_int(document.get('image_size'), 'image_size')
        self.num_classes = _positive_int(document.get('num_classes'), 'num_classes')
        self.whole_ms = _positive_number(document.get('whole_ms'), 'whole_ms')
        widths = document.get('widths')
        if not isinstance(widths, list) or not widths:
            raise _Bad('widths is %r, not a list of widths' % (widths,))
        self.widths = [_positive_int(w, 'widths[%d]' % i) for i, w in enumerate(widths)]
        entries = document.get('entries')
        if not isinstance(entries, list) or not entries:
            raise _Bad('entries is not a list of entries')
        self.groups = {}
        self.min_calls = min(e.get('calls', 0) if isinstance(e, dict) else 0 for e in entries)
        for n, entry in enumerate(entries):
            key, c_in, c_out, ms = _entry_key(entry, 'entries[%d]' % n)
            cells = self.groups.setdefault(key, {})
            if (c_in, c_out) in cells:
                raise _Bad('entries[%d] (%s, in %d, out %d) is listed twice'
                           % (n, _key_text(key), c_in, c_out))
            cells[c_in, c_out] = ms
        self.grids = {}
        for key, cells in self.groups.items():
            ins, outs = sorted({i for i, _ in cells}), sorted({o for _, o in cells})
            for i in ins:
                for o in outs:
                    if (i, o) not in cells:
                        raise _Bad('the entry of %s, in %d, out %d is missing: the grid of a shape '
                                   'is every listed input width with every listed output width'
                                   % (_key_text(key), i, o))
            self.grids[key] = (ins, outs)
        self.probes = []
        for n, entry in enumerate(document.get('probes') or []):
            self.probes.append(_entry_key(entry, 'probes[%d]' % n))
        self.digest = None

    def _conv_ms(self, conv, where):
        key = shape_key(conv, self.batch)
        if key not in self.grids:
            raise UserError('latency table %s has no entry for %s (%s); it was measured for %s at '
                            'batch %d, %dx%d: measure a table of this model with `latency-table`'
                            % (self.path, where, _key_text(key), self.model_name, self.batch,
                               self.image_size, self.image_size))
        ins, outs = self.grids[key]
        cells = self.groups[key]
        i0, i1, wi = _bracket(ins, conv.in_channels)
        o0, o1, wo = _bracket(outs, conv.out_channels)
        low = (1 - wo) * cells[ins[i0], outs[o0]] + wo * cells[ins[i0], outs[o1]]
        high = (1 - wo) * cells[ins[i1], outs[o0]] + wo * cells[ins[i1], outs[o1]]
        return (1 - wi) * low + wi * high

    def _sum(self, model, deps):
        trace = _trace(model, deps, self.num_classes, self.image_size)
        return [self._conv_ms(c, 'conv%d (%s)' % (c.index, c.kernel)) for c in trace.convs]

    @property
    def rest_ms(self):
        return self.whole_ms - sum(self._base_layers)

    def check_model(self, model, deps, image_size, batch, flag='--latency_table'):
        """A UserError unless the table is of `model` at this input and batch, and covers `deps`
        (no conv wider than the table's grid)."""
        if model.name != self.model_name or image_size != self.image_size or batch != self.batch:
            raise UserError('%s %s was measured for %s at %dx%d, batch %d, not %s at %dx%d, batch '
                            '%d; pass --latency_batch %d, or measure a table for this run with '
                            '`latency-table`' % (flag, self.path, self.model_name,
                                                 self.image_size, self.image_size, self.batch,
                                                 model.name, image_size, image_size, batch,
                                                 self.batch))
        for conv in _trace(model, deps, self.num_classes, self.image_size).convs:
            key = shape_key(conv, self.batch)
            self._conv_ms(conv, 'conv%d' % conv.index)
            ins, outs = self.grids[key]
            if conv.in_channels > ins[-1] or conv.out_channels > outs[-1]:
                raise UserError('%s %s covers %s up to %d input and %d output channels, but conv%d '
                                'of widths %s has %d and %d; measure a table from this run\'s start '
                                'file' % (flag, self.path, _key_text(key), ins[-1], outs[-1],
                                          conv.index, list(deps), conv.in_channels,
                                          conv.out_channels))

    @property
    def _base_layers(self):
        from tf_benchmarks.models.registry import get_model
        if not hasattr(self, '_base_cache'):
            self._base_cache = self._sum(get_model(self.model_name), self.widths)
        return self._base_cache

    def predict(self, model, deps):
        """{'ms': predicted ms per call at `deps`, 'layers': [ms per conv], 'rest_ms'}."""
        layers = self._sum(model, deps)
        return dict(ms=self.rest_ms + sum(layers), layers=layers, rest_ms=self.rest_ms)

    def alignment(self):
        """[(shape text, axis, width p-1, ms, width p, ms)] of the probes against the grid."""
        out = []
        for key, c_in, c_out, ms in self.probes:
            if key not in self.groups:
                continue
            ins, outs = self.grids[key]
            if c_in not in ins:
                axis, p, grid_ms = 'in', c_in + 1, self.groups[key].get((c_in + 1, outs[-1]))
            else:
                axis, p, grid_ms = 'out', c_out + 1, self.groups[key].get((ins[-1], c_out + 1))
            if grid_ms:
                out.append((_key_text(key), axis, p - 1, ms, p, grid_ms))
        return out

    def alignment_text(self):
        rows = self.alignment()
        if not rows:
            return 'no alignment probes'
        ratios = [ms / grid_ms for _, _, _, ms, _, grid_ms in rows]
        return ('one channel below a multiple of 8 takes %.2fx the time of the multiple '
                '(median of %d probes, %.2f-%.2fx)' % (statistics.median(ratios), len(ratios),
                                                       min(ratios), max(ratios)))
