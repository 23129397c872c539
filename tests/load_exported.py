"""Test helper, run as a fresh process (TensorFlow 2 in eager mode, nothing of this project but its
quiet import): loads every exported directory given with `tf.saved_model.load` and, where it has
them, its model.tflite and model_int8.tflite with the TFLite interpreter and its model.onnx with
ONNX Runtime, runs uint8 images through each (the int8 file's input quantized and its logits
dequantized with the file's scales and zero points), and saves the logits and probabilities (and
the int8 file's input and output types). Usage: python load_exported.py IMAGES.npz OUT.npz DIR...
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
        int8 = os.path.join(directory, 'model_int8.tflite')
        if os.path.exists(int8):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                interpreter = tf.lite.Interpreter(model_path=int8)
            runner = interpreter.get_signature_runner('serving_default')
            source = runner.get_input_details()['images']
            target = runner.get_output_details()['logits']
            scale, zero = source['quantization']
            q = np.clip(np.round(images / scale) + zero, -128, 127).astype(source['dtype'])
            logits = runner(images=q)['logits']
            out['int8_%d_types' % i] = np.array([np.dtype(source['dtype']).name,
                                                 np.dtype(logits.dtype).name])
            scale, zero = target['quantization']
            out['int8_%d_logits' % i] = (logits.astype(np.float32) - zero) * scale
        onnx = os.path.join(directory, 'model.onnx')
        if os.path.exists(onnx):
            import onnxruntime
            session = onnxruntime.InferenceSession(onnx, providers=['CPUExecutionProvider'])
            out['onnx%d_logits' % i] = session.run(['logits'], {'images': images})[0]
    np.savez(sys.argv[2], **out)


if __name__ == '__main__':
    main()
