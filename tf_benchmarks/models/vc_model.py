"""`vc`: the 13-conv VGG-16 for CIFAR-10 of AOFP, with the original's variable names
(`v0/cg/conv{i}/conv2d/kernel`, `v0/cg/conv{i}/batchnorm{i}/...`, `v0/cg/affine{0,1}/dense/...`)."""

VGG_ORIGIN_DEPS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = frozenset([1, 3, 6, 9, 12])


def add_inference(cnn, deps, num_classes):
    """conv3x3-BN-ReLU x13 with five 2x2 max-pools, flatten, FC-512-ReLU, FC-num_classes."""
    with cnn.variable_scope('v0/cg'):
        for i, width in enumerate(deps):
            cnn.conv(width, 3, 3)
            if i in POOL_AFTER:
                cnn.mpool(2, 2)
        cnn.flatten()
        cnn.affine(512)
        return cnn.affine(num_classes, activation='linear')
