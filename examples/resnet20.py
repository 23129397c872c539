"""ResNet-20 for CIFAR-10 (He et al. 2016, 3 stages of 3 basic blocks, widths 16/32/64), written as
a network of your own: `--model examples/resnet20.py` (see docs/own-network.md).

Widths (DEFAULT_DEPS, one per conv layer in the order the layers are built): 0 the stem; for each
stage, a 1x1 stride-2 projection first where the stage downsamples, then the two 3x3 convs of each
block. A block's second conv is added to the residual stream, so the project puts it in one channel
group with the stream's producer (the stem or the projection): they are pruned together.
"""

NAME = 'resnet20'
NUM_CLASSES = 10
IMAGE_SIZE = 32
BLOCKS = 3
WIDTHS = (16, 32, 64)


def _layout():
    """[(stage, block, role)] per widths index: role 'stem', 'projection', 'first' or 'second'."""
    layout = [(0, None, 'stem')]
    for stage in range(3):
        if stage > 0:
            layout.append((stage, None, 'projection'))
        for block in range(BLOCKS):
            layout += [(stage, block, 'first'), (stage, block, 'second')]
    return layout


DEFAULT_DEPS = [WIDTHS[stage] for stage, _, _ in _layout()]


def add_inference(cnn, deps, num_classes):
    """conv3x3-BN-ReLU; per stage 3 blocks of conv3x3-BN-ReLU, conv3x3-BN, + shortcut, ReLU (the
    first block of stages 2 and 3 strides 2, its shortcut a 1x1 stride-2 conv + BN); global average
    pool, FC."""
    layer = iter(range(len(deps)))
    with cnn.variable_scope('v0/cg'):
        stream = cnn.conv(deps[next(layer)], 3, 3, kernel_initializer='he_normal_fan_out')
        for stage in range(3):
            for block in range(BLOCKS):
                stride = 2 if stage > 0 and block == 0 else 1
                shortcut = stream
                if stride == 2:
                    shortcut = cnn.conv(deps[next(layer)], 1, 1, 2, 2, input_layer=stream,
                                        activation=None, kernel_initializer='he_normal_fan_out')
                cnn.conv(deps[next(layer)], 3, 3, stride, stride, input_layer=stream,
                         mode='SAME_RESNET', kernel_initializer='he_normal_fan_out')
                residual = cnn.conv(deps[next(layer)], 3, 3, activation=None,
                                    kernel_initializer='he_normal_fan_out')
                stream = cnn.relu(cnn.add([shortcut, residual]))
        cnn.spatial_mean()
        return cnn.affine(num_classes, activation='linear')
