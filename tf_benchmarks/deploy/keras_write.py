"""Builds and saves the Keras model of an `export-keras` op list (keras_export.record) with its
weights, in a fresh eager process; `export-keras` runs it, since the drivers run in graph mode.

    python tf_benchmarks/deploy/keras_write.py OPS.json WEIGHTS.hdf5 OUT.keras [OPS WEIGHTS OUT ...]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tf_benchmarks.core.tf_startup import import_tensorflow  # noqa: E402
from tf_benchmarks.files import hdf5_io  # noqa: E402

ACTIVATIONS = {'relu': 'relu', 'relu6': 'relu6', 'sigmoid': 'sigmoid', 'tanh': 'tanh',
               'swish': 'silu', 'hard_sigmoid': 'hard_sigmoid', 'hard_swish': 'hard_silu'}


def _symmetric(kernel_size):
    """SAME_RESNET's padding: (k-1)//2 before, k//2 after, on both axes."""
    return tuple(((k - 1) // 2, k // 2) for k in kernel_size)


def build(description, weights):
    """The keras.Model of the description, its weights set."""
    import keras
    from keras import layers
    inputs = keras.Input(tuple(description['input']), name='images')
    x = inputs
    mean, std = description['mean'], description['std']
    if mean == [127.5] * 3 and std == [127.5] * 3:
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name='normalization')(x)
    elif mean != [0.0] * 3 or std != [1.0] * 3:
        x = layers.Normalization(mean=mean, variance=[s * s for s in std],
                                 name='normalization')(x)
    values, assign = [x], []
    for op in description['ops'][1:]:
        ins = [values[i] for i in op['inputs']]
        kind = op['op']
        strides = tuple(op.get('strides', (1, 1)))
        mode = op.get('mode')
        if mode == 'SAME_RESNET':
            size = op.get('kernel_size') or op.get('pool_size')
            if strides == (1, 1):
                mode = 'SAME'
            else:
                ins = [layers.ZeroPadding2D(_symmetric(size))(ins[0])]
                mode = 'VALID'
        padding = (mode or 'valid').lower()
        if kind == 'conv':
            layer = layers.Conv2D(op['filters'], tuple(op['kernel_size']), strides, padding,
                                  use_bias=op['bias'] is not None, name=op['name'])
            assign.append((layer, [op['kernel']] + ([op['bias']] if op['bias'] else [])))
        elif kind == 'depthwise':
            layer = layers.DepthwiseConv2D(tuple(op['kernel_size']), strides, padding,
                                           use_bias=op['bias'] is not None, name=op['name'])
            assign.append((layer, [op['kernel']] + ([op['bias']] if op['bias'] else [])))
        elif kind == 'batch_norm':
            layer = layers.BatchNormalization(epsilon=op['epsilon'], name=op['name'])
            assign.append((layer, op['weights']))
        elif kind == 'activation':
            layer = (layers.ReLU() if op['activation'] == 'relu'
                     else layers.Activation(ACTIVATIONS[op['activation']]))
        elif kind == 'pool':
            pool = layers.MaxPooling2D if op['kind'] == 'max' else layers.AveragePooling2D
            layer = pool(tuple(op['pool_size']), strides, padding)
        elif kind == 'pad':
            layer = layers.ZeroPadding2D(tuple(tuple(p) for p in op['padding']))
        elif kind == 'concat':
            layer = layers.Concatenate(axis=-1)
        elif kind == 'add':
            layer = layers.Add()
        elif kind == 'spatial_mean':
            layer = layers.GlobalAveragePooling2D()
        elif kind == 'flatten':
            layer = layers.Flatten()
        elif kind == 'dense':
            layer = layers.Dense(op['units'], name=op['name'])
            assign.append((layer, [op['kernel'], op['bias']]))
        else:
            raise ValueError('unknown op %r' % kind)
        values.append(layer(ins if kind in ('concat', 'add') else ins[0]))
    model = keras.Model(inputs, values[description['output']],
                        name=str(description['model']).replace(':', '_'))
    for layer, names in assign:
        layer.set_weights([weights[n] for n in names])
    return model


def main(arguments):
    import_tensorflow()
    for i in range(0, len(arguments), 3):
        ops_file, weights_file, out = arguments[i:i + 3]
        with open(ops_file) as f:
            description = json.load(f)
        weights = hdf5_io.read_hdf5(weights_file).weights
        build(description, weights).save(out)


if __name__ == '__main__':
    if len(sys.argv) < 4 or (len(sys.argv) - 1) % 3:
        sys.exit(__doc__)
    main(sys.argv[1:])
