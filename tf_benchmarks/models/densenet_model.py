"""`dc40`: DenseNet-40 (k=12, no bottleneck, no compression) of C-SGD, with the original's variable
names (`conv0/kernel`, `stage1/block0/block0/gamma`, `stage1/block0/conv1/kernel`,
`stage1/transition1/...`, `bnlast/...`, `fc10/...`)."""

BLOCKS_PER_STAGE = 12
DC40_ORIGIN_DEPS = tuple([16] + [12] * 12 + [160] + [12] * 12 + [304] + [12] * 12)


def customized_dc40_deps(spec):
    """'a-b-c' -> DC40 widths with a, b, c filters in every incremental layer of stage 1, 2, 3."""
    widths = [int(x) for x in spec.split('-')]
    if len(widths) != 3:
        raise ValueError('expected three widths like 3-3-3, got %r' % (spec,))
    return tuple([16] + [widths[0]] * 12 + [160] + [widths[1]] * 12 + [304] + [widths[2]] * 12)


def incremental_layers():
    """Indices of the 36 incremental 3x3 convs (everything but conv0 and the two transitions)."""
    return [i for i in range(39) if i not in (0, 13, 26)]


def add_inference(cnn, deps, num_classes):
    """Pre-activation DenseNet: conv0, 3 stages of 12 BN-ReLU-conv3x3-concat blocks, transitions
    BN-ReLU-conv1x1-ReLU-avgpool (the extra ReLU is the original's), BN-ReLU-GAP-FC."""
    cnn.conv(deps[0], 3, 3, name='conv0', use_batch_norm=False, activation=None,
             kernel_initializer='he_normal_fan_out')
    layer = 1
    for stage in (1, 2, 3):
        for block in range(BLOCKS_PER_STAGE):
            stage_input = cnn.top_layer
            with cnn.variable_scope('stage%d/block%d' % (stage, block)):
                cnn.batch_norm(name='block%d' % block)
                cnn.relu()
                new = cnn.conv(deps[layer], 3, 3, name='conv1', use_batch_norm=False,
                               activation=None, kernel_initializer='he_normal_fan_out')
            cnn.concat([stage_input, new])
            layer += 1
        if stage < 3:
            with cnn.variable_scope('stage%d/transition%d' % (stage, stage)):
                cnn.batch_norm(name='transition%d' % stage)
                cnn.relu()
                cnn.conv(deps[layer], 1, 1, name='conv1', use_batch_norm=False, activation='relu')
            cnn.apool(2, 2)
            layer += 1
    cnn.batch_norm(name='bnlast')
    cnn.relu()
    cnn.spatial_mean()
    return cnn.affine(num_classes, activation='linear', name='fc10')
