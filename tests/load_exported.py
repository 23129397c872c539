"""Test helper, run as a fresh process (TensorFlow 2 in eager mode, nothing of this project but its
quiet import): loads every exported directory given with `tf.saved_model.load` and, where it has
one, its model.tflite with the TFLite interpreter, runs uint8 images through both, and saves the
logits and probabilities. Usage: python load_exported.py IMAGES.npz OUT.npz DIR...
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_benchmarks.core.tf_startup import import_tensorflow  # noqa: E402

import_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    images = np.load(sys.argv[1])['images']
    out = {}
    for i, directory in enumerate(sys.argv[3:]):
        serving = tf.saved_model.load(directory).signatures['serving_default']
        result = serving(images=tf.constant(images))
        out['saved%d_logits' % i] = result['logits'].numpy()
        out['saved%d_probabilities' % i] = result['probabilities'].numpy()
        tflite = os.path.join(directory, 'model.tflite')
        if os.path.exists(tflite):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
                interpreter = tf.lite.Interpreter(model_path=tflite)
            runner = interpreter.get_signature_runner('serving_default')
            result = runner(images=images)
            out['tflite%d_logits' % i] = result['logits']
    np.savez(sys.argv[2], **out)


if __name__ == '__main__':
    main()
