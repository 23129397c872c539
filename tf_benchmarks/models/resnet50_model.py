"""`sres50`: the authors' stagewise ResNet-50 for ImageNet (torchvision's layout, "v1.5": the stride
of a stage's first block on its 3x3), with variable names in the `vc` convention and the conv
counter equal to the widths index: `v0/cg/conv{i}/conv2d/kernel`, `v0/cg/conv{i}/batchnorm{i}/...`,
`v0/cg/affine0/dense/...`.

Widths (53 entries): 0 the 7x7/2 stem; for stage s with pacesetter p (1, 11, 24, 43), entry p is the
stage's 1x1 projection + BN (stride 1 in stage 1, else 2), built before the blocks, and entries
p+1+3b, p+2+3b, p+3+3b the 1x1, the 3x3 and the last 1x1 of block b. A block's last 1x1 is added to
the residual stream, so it is in its pacesetter's channel group. The internal layers are each block's
first 1x1 and its 3x3. Padding is PyTorch's (symmetric: 3 for the stem, 1 for the 3x3s and the
3x3/2 max-pool), so imported torchvision weights compute torchvision's numbers; BN epsilon 1e-5.
"""

BLOCKS = (3, 4, 6, 3)
INTERNAL_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
BN_EPSILON = 1e-5
INIT = 'he_normal_fan_out'


def _pacesetters():
    out, p = [], 1
    for n in BLOCKS:
        out.append(p)
        p += 1 + 3 * n
    return out


PACESETTERS = tuple(_pacesetters())  # 1, 11, 24, 43


def origin_deps():
    deps = [64]
    for n, w in zip(BLOCKS, INTERNAL_WIDTHS):
        deps += [w * EXPANSION] + [w, w, w * EXPANSION] * n
    return tuple(deps)


def internal_layers():
    """Each block's first 1x1 and its 3x3 (32 layers): what both methods prune on ImageNet."""
    return [p + i + 3 * b for p, n in zip(PACESETTERS, BLOCKS) for b in range(n) for i in (1, 2)]


def followers():
    """{each block's last 1x1: its stage's pacesetter}."""
    return {p + 3 + 3 * b: p for p, n in zip(PACESETTERS, BLOCKS) for b in range(n)}


def strided_first_convs():
    """The first 1x1 of block 0 of stages 2-4: the ResNet paper (v1) puts the stage's stride there
    instead of on the 3x3, which divides their multiply-accumulates by 4 and changes nothing else."""
    return [p + 1 for p in PACESETTERS[1:]]


def add_inference(cnn, deps, num_classes):
    """Stem conv7x7/2-BN-ReLU, max-pool 3x3/2; 4 stages of bottleneck blocks (1x1-BN-ReLU,
    3x3-BN-ReLU, 1x1-BN, + shortcut, ReLU; block 0's shortcut the stage's projection); global
    average pool, FC."""
    cnn.bn_epsilon = BN_EPSILON
    with cnn.variable_scope('v0/cg'):
        stream = cnn.conv(deps[0], 7, 7, 2, 2, mode='SAME_RESNET', kernel_initializer=INIT)
        stream = cnn.mpool(3, 3, 2, 2, mode='SAME_RESNET')
        for s, (p, n) in enumerate(zip(PACESETTERS, BLOCKS)):
            stride = 1 if s == 0 else 2
            shortcut = cnn.conv(deps[p], 1, 1, stride, stride, input_layer=stream,
                                activation=None, kernel_initializer=INIT)
            for b in range(n):
                first = p + 1 + 3 * b
                cnn.conv(deps[first], 1, 1, input_layer=stream, kernel_initializer=INIT)
                block_stride = stride if b == 0 else 1
                cnn.conv(deps[first + 1], 3, 3, block_stride, block_stride, mode='SAME_RESNET',
                         kernel_initializer=INIT)
                residual = cnn.conv(deps[first + 2], 1, 1, activation=None,
                                    kernel_initializer=INIT)
                stream = cnn.relu(cnn.add([shortcut, residual]))
                shortcut = stream
        cnn.spatial_mean()
        return cnn.affine(num_classes, activation='linear')


# torchvision's BN tensor names -> ours; its `num_batches_tracked` has no counterpart.
TORCHVISION_BN = {'weight': 'gamma', 'bias': 'beta', 'running_mean': 'moving_mean',
                  'running_var': 'moving_variance'}
TORCHVISION_FC = {'fc.weight': 'v0/cg/affine0/dense/kernel', 'fc.bias': 'v0/cg/affine0/dense/bias'}


def torchvision_layers():
    """[(widths index, torchvision conv module, its BN module)] of the 53 conv layers: `conv1`/`bn1`
    the stem; `layer{s}.0.downsample.0`/`.1` stage s's projection (its pacesetter p); and
    `layer{s}.{b}.conv{j}`/`bn{j}` (j = 1, 2, 3) the widths index p + j + 3b."""
    layers = [(0, 'conv1', 'bn1')]
    for s, (p, n) in enumerate(zip(PACESETTERS, BLOCKS), start=1):
        layers.append((p, 'layer%d.0.downsample.0' % s, 'layer%d.0.downsample.1' % s))
        for b in range(n):
            for j in (1, 2, 3):
                layers.append((p + j + 3 * b, 'layer%d.%d.conv%d' % (s, b, j),
                               'layer%d.%d.bn%d' % (s, b, j)))
    return sorted(layers)


def torchvision_names():
    """{torchvision state-dict name: sres50 variable name}: 267 names, all of torchvision's 320 but
    the 53 `num_batches_tracked`. Conv kernels are OIHW there and HWIO here, `fc.weight` [out, in]
    there and [in, out] here."""
    names = {}
    for i, conv, bn in torchvision_layers():
        names[conv + '.weight'] = 'v0/cg/conv%d/conv2d/kernel' % i
        for theirs, ours in TORCHVISION_BN.items():
            names['%s.%s' % (bn, theirs)] = 'v0/cg/conv%d/batchnorm%d/%s' % (i, i, ours)
    names.update(TORCHVISION_FC)
    return names
