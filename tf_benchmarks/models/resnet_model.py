"""`src56` / `src110`: the authors' stagewise CIFAR ResNets (6n+2 layers, n = 9 or 18 blocks per
stage), with variable names in the `vc` convention and the conv counter equal to the widths index:
`v0/cg/conv{i}/conv2d/kernel`, `v0/cg/conv{i}/batchnorm{i}/...`, `v0/cg/affine0/dense/...`.

Widths (6n+3 entries): 0 the 3x3 stem; for stage s = 0, 1, 2 starting at p = (2n+1)s, entry p is the
stage's pacesetter (the stem, or a 1x1 stride-2 projection + BN), entries p+1+2b and p+2+2b the
first (internal) and second (follower) 3x3 conv of block b. A follower's output is added to the
residual stream, so it is in its pacesetter's channel group and must have its width.
"""

STAGE_WIDTHS = (16, 32, 64)
INIT = 'he_normal_fan_out'  # He et al.'s N(0, 2 / (k*k*C_out)), as ResNets are initialized


def origin_deps(n):
    return tuple(w for w in STAGE_WIDTHS for _ in range(2 * n + 1))


def pacesetters(n):
    return [(2 * n + 1) * s for s in range(3)]


def internal_layers(n):
    """The first conv of every block (what AOFP searches by default)."""
    return [p + 1 + 2 * b for p in pacesetters(n) for b in range(n)]


def followers(n):
    """{follower: its pacesetter}."""
    return {p + 2 + 2 * b: p for p in pacesetters(n) for b in range(n)}


def make_add_inference(n):
    def add_inference(cnn, deps, num_classes):
        """Stem conv3x3-BN-ReLU; 3 stages of n blocks conv3x3-BN-ReLU, conv3x3-BN, + shortcut,
        ReLU (block 0 of stages 2 and 3: stride 2, shortcut a 1x1 stride-2 projection + BN);
        global average pool, FC."""
        with cnn.variable_scope('v0/cg'):
            stream = cnn.conv(deps[0], 3, 3, kernel_initializer=INIT)
            for s, p in enumerate(pacesetters(n)):
                for b in range(n):
                    stride = 2 if s > 0 and b == 0 else 1
                    shortcut = stream
                    if stride == 2:
                        shortcut = cnn.conv(deps[p], 1, 1, 2, 2, input_layer=stream,
                                            activation=None, kernel_initializer=INIT)
                    cnn.conv(deps[p + 1 + 2 * b], 3, 3, stride, stride, input_layer=stream,
                             mode='SAME_RESNET', kernel_initializer=INIT)
                    residual = cnn.conv(deps[p + 2 + 2 * b], 3, 3, activation=None,
                                        kernel_initializer=INIT)
                    stream = cnn.relu(cnn.add([shortcut, residual]))
            cnn.spatial_mean()
            return cnn.affine(num_classes, activation='linear')
    return add_inference
