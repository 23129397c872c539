"""Test helper, run as a fresh process (Keras 3, eager; nothing of this project): opens every
exported model given with keras.saving.load_model, runs its images through it and saves the
outputs. Usage: python load_keras.py OUT.npz MODEL.keras IMAGES.npy [MODEL.keras IMAGES.npy ...]
"""

import os
import sys

import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import keras  # noqa: E402


def main(out, pairs):
    outputs = {}
    for i in range(0, len(pairs), 2):
        model = keras.saving.load_model(pairs[i])
        outputs['out%d' % (i // 2)] = np.asarray(model(np.load(pairs[i + 1]), training=False))
        outputs['layers%d' % (i // 2)] = np.asarray([type(l).__name__ for l in model.layers])
    np.savez(out, **outputs)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2:])
