"""Writes the Keras models the Keras import tests read, in a fresh (eager) process: each as
NAME.keras and NAME.h5 with random weights (BN statistics in a sane range), with
NAME_images.npy (float32 pixels 0..255) and NAME_logits.npy (Keras' own pre-softmax outputs).

    python tests/keras_models.py OUT_DIR NAME [NAME ...]      (names: see MODELS)
"""

import os
import sys

import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import keras  # noqa: E402
from keras import layers  # noqa: E402


def vgg():
    """Sequential: Rescaling, conv with bias + BN + ReLU, conv with its own relu, max-pool, valid
    conv without bias + BN without center, average pool (same), flatten, dense, dropout, dense
    softmax."""
    return keras.Sequential([
        keras.Input((16, 16, 3)), layers.Rescaling(1 / 127.5, offset=-1),
        layers.Conv2D(4, 3, padding='same', name='c1'), layers.BatchNormalization(name='b1'),
        layers.ReLU(),
        layers.Conv2D(6, 3, padding='same', activation='relu', name='c2'),
        layers.MaxPooling2D(2),
        layers.Conv2D(8, 3, use_bias=False, name='c3'),
        layers.BatchNormalization(center=False, name='b3'), layers.Activation('relu'),
        layers.AveragePooling2D(2, padding='same'), layers.Flatten(),
        layers.Dense(8, activation='relu'), layers.Dropout(0.5),
        layers.Dense(5, activation='softmax')], name='vgg')


def _bn(x, name, **kwargs):
    return layers.BatchNormalization(epsilon=1.001e-5, name=name, **kwargs)(x)


def resnet():
    """keras.applications.ResNet50's stem and blocks at tiny widths: Normalization, zero padding
    + 7x7 valid stride-2 conv, padding + max-pool, a projection block (stride 2) and an identity
    block (Add), global average pool, dense softmax."""
    inputs = keras.Input((32, 32, 3))
    x = layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0, 3300.0, 3000.0])(inputs)
    x = layers.ZeroPadding2D(3)(x)
    x = layers.Conv2D(8, 7, strides=2, name='stem')(x)
    x = layers.Activation('relu')(_bn(x, 'stem_bn'))
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    for block, stride in (('b1', 2), ('b2', 1)):
        shortcut = x
        if stride == 2:
            shortcut = _bn(layers.Conv2D(12, 1, strides=2, name=block + '_proj')(x),
                           block + '_proj_bn')
        y = layers.Activation('relu')(_bn(layers.Conv2D(6, 1, strides=stride,
                                                        name=block + '_1')(x), block + '_1_bn'))
        y = layers.Activation('relu')(_bn(layers.Conv2D(6, 3, padding='same',
                                                        name=block + '_2')(y), block + '_2_bn'))
        y = _bn(layers.Conv2D(12, 1, name=block + '_3')(y), block + '_3_bn')
        x = layers.Activation('relu')(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation='softmax', name='fc')(x),
                       name='resnet')


def dense():
    """A DenseNet backbone (a nested model): pre-activation BN-ReLU-conv layers concatenated,
    a transition with average pooling; outside: global pool, dense."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(6, 3, padding='same', use_bias=False, name='conv0')(inputs)
    for stage in range(2):
        for i in range(2):
            y = layers.ReLU()(layers.BatchNormalization(name='s%d_bn%d' % (stage, i))(x))
            y = layers.Conv2D(3, 3, padding='same', use_bias=False,
                              name='s%d_conv%d' % (stage, i))(y)
            x = layers.Concatenate()([x, y])
        if stage == 0:
            x = layers.ReLU()(layers.BatchNormalization(name='t_bn')(x))
            x = layers.Conv2D(8, 1, use_bias=False, name='t_conv')(x)
            x = layers.AveragePooling2D(2)(x)
    x = layers.ReLU()(layers.BatchNormalization(name='last_bn')(x))
    backbone = keras.Model(inputs, x, name='backbone')
    outer = keras.Input((16, 16, 3))
    y = layers.GlobalAveragePooling2D()(backbone(outer))
    return keras.Model(outer, layers.Dense(4, name='fc')(y), name='dense')


def mobile():
    """MobileNetV2-like: conv + BN + ReLU6, an inverted residual (expand 1x1, depthwise 3x3,
    project 1x1 + BN, Add), zero padding + stride-2 valid depthwise, hard_swish, a 1x1 conv with
    swish, global pool, dense softmax."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.ReLU(6.0)(layers.BatchNormalization(name='stem_bn')(
        layers.Conv2D(8, 3, strides=2, padding='same', use_bias=False, name='stem')(x)))
    y = layers.ReLU(6.0)(layers.BatchNormalization(name='expand_bn')(
        layers.Conv2D(16, 1, use_bias=False, name='expand')(x)))
    y = layers.ReLU(6.0)(layers.BatchNormalization(name='dw_bn')(
        layers.DepthwiseConv2D(3, padding='same', use_bias=False, name='dw')(y)))
    y = layers.BatchNormalization(name='project_bn')(
        layers.Conv2D(8, 1, use_bias=False, name='project')(y))
    x = layers.Add()([x, y])
    y = layers.ReLU(6.0)(layers.BatchNormalization(name='expand2_bn')(
        layers.Conv2D(12, 1, use_bias=False, name='expand2')(x)))
    y = layers.ZeroPadding2D(((0, 1), (0, 1)))(y)
    y = layers.DepthwiseConv2D(3, strides=2, name='dw2')(y)   # with a bias
    y = layers.Activation('hard_swish')(layers.BatchNormalization(name='dw2_bn')(y))
    y = layers.Conv2D(10, 1, activation='swish', name='head')(y)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(inputs, layers.Dense(10, activation='softmax', name='fc')(y),
                       name='mobile')


def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)


def mobilenetv2():
    """keras.applications.MobileNetV2 (alpha 0.35) as a backbone inside a model with a
    Rescaling at its start."""
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35,
                                              input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.GlobalAveragePooling2D()(backbone(x))
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, layers.Dense(10, activation='softmax', name='fc')(x),
                       name='mnv2')


def lambda_model():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(2, 3, name='c')(inputs)
    x = layers.Lambda(lambda t: t * 2, name='doubler')(x)
    return keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))


def layernorm_model():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(2, 3, name='c')(inputs)
    x = layers.LayerNormalization(name='ln')(x)
    return keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))


MODELS = dict(vgg=vgg, resnet=resnet, dense=dense, mobile=mobile, resnet50=resnet50,
              mobilenetv2=mobilenetv2, lambda_model=lambda_model, layernorm_model=layernorm_model)


def randomize(model, seed):
    """Random weights: kernels He-scaled, BN scales and variances in 0.5..1.5, the rest small."""
    rng = np.random.default_rng(seed)
    values = []
    for var in model.weights:
        shape, path = tuple(var.shape), var.path
        if 'variance' in path or 'gamma' in path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 4:
            fan_in = shape[0] * shape[1] * (1 if 'depthwise' in path else shape[2])
            value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif len(shape) == 2:
            value = rng.normal(0, np.sqrt(1.0 / shape[0]), shape)
        else:
            value = rng.normal(0, 0.1, shape)
        values.append(value.astype(np.float32))
    model.set_weights(values)


def _last_dense(model):
    for layer in reversed(model.layers):
        if isinstance(layer, layers.Dense):
            return layer
        if isinstance(layer, keras.Model):
            return _last_dense(layer)
    return None


def main(out_dir, names):
    os.makedirs(out_dir, exist_ok=True)
    for seed, name in enumerate(names):
        model = MODELS[name]()
        randomize(model, seed)
        path = os.path.join(out_dir, name)
        model.save(path + '.keras')
        if not name.startswith(('lambda', 'layernorm')):
            model.save(path + '.h5')
        shape = tuple(model.input_shape[1:])
        images = np.random.default_rng(100 + seed).uniform(0, 255, (4,) + shape)
        images = images.astype(np.float32)
        dense = _last_dense(model)
        dense.activation = keras.activations.linear  # the pre-softmax outputs
        np.save(path + '_images.npy', images)
        np.save(path + '_logits.npy', np.asarray(model(images, training=False)))


if __name__ == '__main__':
    import logging
    logging.getLogger('absl').setLevel(logging.ERROR)
    main(sys.argv[1], sys.argv[2:])
