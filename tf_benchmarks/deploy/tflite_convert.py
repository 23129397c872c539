"""Converts a SavedModel written by `export` to a TFLite file with its serving signature, with
`tf.lite.TFLiteConverter.from_saved_model` in eager mode; `export` runs it as its own process, since
in the drivers' graph mode the converter drops the signature. With a representative set (an .npy of
float32 pixels, 0..255, [N, S, S, 3]), the conversion is full-integer post-training quantization of
a SavedModel taking float32 pixels: int8 kernels (per channel) and activations, TFLITE_BUILTINS_INT8
only, int8 input and outputs.

    python tf_benchmarks/deploy/tflite_convert.py SAVED_MODEL_DIR OUT.tflite \
        [FLOAT_PIXELS_SAVED_MODEL_DIR OUT_INT8.tflite REPRESENTATIVE.npy]

(the second conversion, int8, in the same process, which saves a TensorFlow start-up).
"""

import os
import re
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_benchmarks.core.tf_startup import capture_stderr, import_tensorflow  # noqa: E402

# The converter's notices about options the SavedModel path does not use, and the calibrator's
# summary line of a full-integer conversion.
_CONVERTER_NOTICES = re.compile(r'^W\d{4} [\d:. ]+\d+ tf_tfl_flatbuffer_helpers\.cc:\d+\] '
                                r'Ignored (output_format|drop_control_dependency)\.$|'
                                r'^fully_quantize: \d+, inference_type: \d+, input_inference_type: '
                                r'\w+, output_inference_type: \w+$')


def convert(saved_model_dir, out_file, signature='serving_default', representative=None):
    import_tensorflow()
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[signature])
    if representative is not None:
        import numpy as np
        images = np.load(representative).astype(np.float32)

        def samples():
            for i in range(len(images)):
                yield {'images': images[i:i + 1]}
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with capture_stderr(lambda line: bool(_CONVERTER_NOTICES.search(line))), \
            warnings.catch_warnings():
        # the calibrator runs tf.lite.Interpreter, whose deprecation notice is not ours to show
        warnings.filterwarnings('ignore', message='.*tf.lite.Interpreter is deprecated')
        flatbuffer = converter.convert()
    tmp = '%s.tmp-%d' % (out_file, os.getpid())
    with open(tmp, 'wb') as f:
        f.write(flatbuffer)
    os.replace(tmp, out_file)


if __name__ == '__main__':
    if len(sys.argv) not in (3, 6):
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
    if len(sys.argv) == 6:
        convert(sys.argv[3], sys.argv[4], representative=sys.argv[5])
