"""Runs an export directory's models in a fresh process, as a user would load them (TensorFlow 2
eager, the TFLite interpreter, ONNX Runtime), on uint8 images with labels: the SavedModel's logits,
and those of model.tflite, model_int8.tflite (its int8 input quantized from the pixels with the
file's own scale and zero point, its int8 logits dequantized) and model.onnx where present. Writes
per runtime the top-1, and against the SavedModel the largest relative logit difference (max |a - b|
/ max |a| over the images) and the top-1 agreement; non-finite logits are an error (exit 1).

    python tf_benchmarks/deploy/runtime_check.py EXPORT_DIR IMAGES.npz OUT.json
"""

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

BATCH = 256
SAVED_MODEL, TFLITE, TFLITE_INT8, ONNX = 'saved_model', 'tflite', 'tflite_int8', 'onnx'
FILES = {TFLITE: 'model.tflite', TFLITE_INT8: 'model_int8.tflite', ONNX: 'model.onnx'}


def _batched(run, images):
    import numpy as np
    return np.concatenate([run(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def _tflite_runner(path):
    import numpy as np
    import tensorflow as tf
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner('serving_default')
    source = runner.get_input_details()['images']
    target = runner.get_output_details()['logits']

    def run(images):
        if source['dtype'] == np.int8:  # quantized input: q = round(pixel / scale) + zero point
            scale, zero = source['quantization']
            images = np.clip(np.round(images.astype(np.float32) / scale) + zero,
                             -128, 127).astype(np.int8)
        logits = runner(images=images)['logits']
        if target['dtype'] == np.int8:
            scale, zero = target['quantization']
            logits = (logits.astype(np.float32) - zero) * scale
        return logits
    def described(details):
        scale, zero = details['quantization']
        return dict(dtype=np.dtype(details['dtype']).name, scale=float(scale),
                    zero_point=int(zero))
    return run, dict(input=described(source), output=described(target))


def _onnx_runner(path):
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return lambda images: session.run(['logits'], {'images': images})[0], {}


def check(directory, images, labels):
    import numpy as np
    from tf_benchmarks.core.tf_startup import import_tensorflow
    import_tensorflow()
    import tensorflow as tf
    serving = tf.saved_model.load(directory).signatures['serving_default']
    logits = {SAVED_MODEL: _batched(lambda x: serving(images=tf.constant(x))['logits'].numpy(),
                                    images)}
    io = {}
    for name, file in FILES.items():
        path = os.path.join(directory, file)
        if os.path.exists(path):
            run, io[name] = (_onnx_runner if name == ONNX else _tflite_runner)(path)
            logits[name] = _batched(run, images)
    reference = logits[SAVED_MODEL].astype(np.float64)
    scale = np.abs(reference).max()
    out = dict(images=int(len(images)), top1={}, max_rel_logit_diff={}, top1_agreement={},
               io={k: v for k, v in io.items() if v})
    for name, values in logits.items():
        if not np.isfinite(values).all():
            sys.exit('the %s logits of %s are not all finite' % (name, directory))
        predicted = values.argmax(1)
        out['top1'][name] = float(np.mean(predicted == labels))
        if name != SAVED_MODEL:
            out['max_rel_logit_diff'][name] = float(np.abs(values - reference).max() / scale) \
                if scale > 0 else float(np.abs(values - reference).max())
            out['top1_agreement'][name] = float(np.mean(predicted == reference.argmax(1)))
    return out


if __name__ == '__main__':
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    import numpy as np
    data = np.load(sys.argv[2])
    result = check(sys.argv[1], data['images'], data['labels'])
    tmp = '%s.tmp-%d' % (sys.argv[3], os.getpid())
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, sys.argv[3])
