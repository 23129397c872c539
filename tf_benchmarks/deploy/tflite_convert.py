"""Converts a SavedModel written by `export` to a TFLite file with its serving signature, with
`tf.lite.TFLiteConverter.from_saved_model` in eager mode; `export` runs it as its own process, since
in the drivers' graph mode the converter drops the signature.

    python tf_benchmarks/deploy/tflite_convert.py SAVED_MODEL_DIR OUT.tflite
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_benchmarks.core.tf_startup import capture_stderr, import_tensorflow  # noqa: E402

# The converter's notices about options the SavedModel path does not use.
_CONVERTER_NOTICES = re.compile(r'^W\d{4} [\d:. ]+\d+ tf_tfl_flatbuffer_helpers\.cc:\d+\] '
                                r'Ignored (output_format|drop_control_dependency)\.$')


def convert(saved_model_dir, out_file, signature='serving_default'):
    import_tensorflow()
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[signature])
    with capture_stderr(lambda line: bool(_CONVERTER_NOTICES.search(line))):
        flatbuffer = converter.convert()
    tmp = '%s.tmp-%d' % (out_file, os.getpid())
    with open(tmp, 'wb') as f:
        f.write(flatbuffer)
    os.replace(tmp, out_file)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
