"""`export-keras FILE.hdf5 --out NET.keras`: a network at its (pruned) widths as a Keras model file.

The model's builder calls are run on `KerasRecorder`, which records every op (conv, depthwise
conv, BN, activation, pooling, padding, concat, add, pooling to a vector, flatten, dense) with its
weights' names; `keras_write.py` then builds the Keras layers from that list in a fresh process
(Keras runs eagerly; the drivers run in graph mode) and saves them. The model takes float32 pixels
(0..255, NHWC) and applies the file's normalization first, so it gives the project's logits.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile

from tf_benchmarks.core.errors import UserError, cannot_write_message
from tf_benchmarks.deploy.fresh_process import run_script
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.files.atomic import replacing
from tf_benchmarks.network.builder import NetworkBuilder
from tf_benchmarks.network.input_spec import default_spec
from tf_benchmarks.pruning.file_model import read_model_file

FORMAT = 'keras-ops-v1'
NON_NEGATIVE = ('relu', 'relu6', 'sigmoid', 'hard_sigmoid')  # zero padding = -inf for a max-pool


class KerasRecorder(NetworkBuilder):
    """Runs a model's builder calls and records the ops as JSON-able dicts in `self.ops`; node
    tensors are op indices (0: the normalized input)."""

    def __init__(self, image_shape):
        super().__init__(input_tensor=0, image_shape=image_shape, phase_train=False)
        self.ops = [dict(op='input')]
        self._names = set()

    def _op(self, op, inputs, **kwargs):
        self.ops.append(dict(op=op, inputs=list(inputs), **kwargs))
        return len(self.ops) - 1

    def _layer_name(self, variable):
        """A Keras layer name from a variable's scope (`v0/cg/conv3/conv2d/kernel` ->
        `v0_cg_conv3_conv2d`), unique in the model."""
        base = re.sub(r'[^A-Za-z0-9_.\-]', '_', variable.rsplit('/', 1)[0]) or 'layer'
        name, n = base, 1
        while name in self._names:
            name, n = '%s_%d' % (base, n), n + 1
        self._names.add(name)
        return name

    def _emit_variable(self, name, full_name, shape, initializer, trainable):
        return full_name

    def _emit_conv(self, x, kernel, strides, mode):
        shape = self.trace.variables[kernel].shape
        return self._op('conv', [x], kernel=kernel, bias=None, filters=shape[3],
                        kernel_size=list(shape[:2]), strides=list(strides), mode=mode,
                        name=self._layer_name(kernel))

    def _emit_depthwise(self, x, kernel, strides, mode):
        shape = self.trace.variables[kernel].shape
        return self._op('depthwise', [x], kernel=kernel, bias=None, kernel_size=list(shape[:2]),
                        strides=list(strides), mode=mode, name=self._layer_name(kernel))

    def _emit_bias(self, x, bias):
        self.ops[x]['bias'] = bias
        return x

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        return self._op('batch_norm', [x], weights=[gamma, beta, mean, variance],
                        epsilon=float(epsilon), name=self._layer_name(gamma))

    def _emit_relu(self, x):
        return self._op('activation', [x], activation='relu')

    def _emit_activation(self, x, activation):
        return self._op('activation', [x], activation=activation)

    def _emit_pool(self, kind, x, ksize, strides, mode):
        if mode == 'SAME_RESNET' and kind == 'max' and not (
                self.ops[x]['op'] == 'activation' and self.ops[x]['activation'] in NON_NEGATIVE):
            raise UserError('this network max-pools with symmetric padding (SAME_RESNET) a tensor '
                            'that can be negative; Keras pads with zeros, so it cannot be exported '
                            'exactly')
        return self._op('pool', [x], kind=kind, pool_size=list(ksize), strides=list(strides),
                        mode=mode)

    def _emit_pad(self, x, paddings):
        return self._op('pad', [x], padding=[list(p) for p in paddings])

    def _emit_concat(self, xs):
        return self._op('concat', xs)

    def _emit_add(self, xs):
        return self._op('add', xs)

    def _emit_spatial_mean(self, x):
        return self._op('spatial_mean', [x])

    def _emit_flatten(self, x, size):
        return self._op('flatten', [x])

    def _emit_affine(self, x, kernel, bias):
        return self._op('dense', [x], kernel=kernel, bias=bias,
                        units=self.trace.variables[kernel].shape[1], name=self._layer_name(kernel))


def record(model, deps, num_classes=None, input_spec=None):
    """The export's JSON description: input shape and normalization, ops, output op."""
    spec = input_spec or default_spec(model)
    size = spec.image_size
    recorder = KerasRecorder((size, size, 3))
    out = model.build(recorder, deps, num_classes)
    return dict(format=FORMAT, model=model.name, widths=list(model.check_deps(deps)),
                input=[size, size, 3], mean=list(spec.mean), std=list(spec.std),
                ops=recorder.ops, output=out.tensor)


def export_keras(model, deps, weights, out, num_classes=None, input_spec=None):
    """Write `out` (a .keras file, whole or not at all): `model` at `deps` with `weights`;
    returns the description (see `record`)."""
    description = record(model, deps, num_classes, input_spec)
    export_keras_many([(description, weights, out)])
    return description


def export_keras_many(jobs):
    """Write each (description, weights, out .keras path) of `jobs` in one Keras process; every
    file is whole or not there."""
    for _, _, out in jobs:
        if not out.endswith('.keras'):
            raise UserError('--out %s: a Keras model file is named NAME.keras' % out)
        if os.path.isdir(out):
            raise UserError('--out %s is a directory; name the .keras file to write' % out)
    work = tempfile.mkdtemp(prefix='keras-export-')
    try:
        arguments = []
        for i, (description, weights, out) in enumerate(jobs):
            ops_file = os.path.join(work, 'ops%d.json' % i)
            with open(ops_file, 'w') as f:
                json.dump(description, f)
            weights_file = os.path.join(work, 'weights%d.hdf5' % i)
            needed = {n for op in description['ops'] for n in
                      [op.get('kernel'), op.get('bias')] + op.get('weights', []) if n}
            hdf5_io.save_hdf5(weights_file, {n: weights[n] for n in sorted(needed)})
            arguments.append((ops_file, weights_file, out))
        try:
            with contextlib.ExitStack() as stack:
                files = []
                for ops_file, weights_file, out in arguments:
                    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
                    tmp = stack.enter_context(replacing(out, keep_extension=True))
                    files += [ops_file, weights_file, tmp]
                run_script('keras_write.py', files, 'writing the Keras model %s failed'
                           % ', '.join(a[2] for a in arguments))
        except OSError as e:
            raise UserError(cannot_write_message(e.filename or jobs[0][2], e.strerror or e)) \
                from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export_keras_file(path, out, model_name=None, log=print):
    """`export-keras`: the weights file `path` (an AOFP tuned file at its pruned widths) as
    `out`."""
    mf = read_model_file(path, model_name)
    description = export_keras(mf.model, mf.deps, mf.weights, out, mf.num_classes, mf.input_spec)
    log('exported %s (%s, widths %s%s) to %s: Keras model, float32 pixels [N,%d,%d,3] -> logits '
        '[N,%d] (%d layers)'
        % (path, mf.model.name, list(mf.deps), ', masked filters removed' if mf.masked else '',
           out, mf.input_spec.image_size, mf.input_spec.image_size, mf.num_classes,
           len(description['ops'])))
    return description
