"""`export --onnx`: the exported SavedModel as model.onnx, converted by tf2onnx (`python -m
tf2onnx.convert --saved-model`, opset 17) in its own process; tf2onnx and onnxruntime are the
optional extra `pip install -e '.[onnx]'`, imported only here and in runtime_check.py."""

import importlib.util
import os
import subprocess
import sys

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.atomic import replacing

OPSET = 17
PACKAGES = ('tf2onnx', 'onnxruntime', 'onnx')


def check_installed():
    """A UserError naming the extra unless tf2onnx, onnx and onnxruntime can be imported."""
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError('export --onnx needs %s, which %s not installed: pip install -e '
                        '\'.[onnx]\' in the repository (tf2onnx, onnx and onnxruntime)'
                        % (', '.join(missing), 'is' if len(missing) == 1 else 'are'))


def convert(saved_model_dir, out_file):
    """Convert the SavedModel's serving signature to `out_file` (written under a temporary name,
    then renamed); a UserError with tf2onnx's last lines if it fails."""
    with replacing(out_file) as tmp:
        result = subprocess.run(
            [sys.executable, '-m', 'tf2onnx.convert', '--saved-model', saved_model_dir,
             '--signature_def', 'serving_default', '--tag', 'serve', '--opset', str(OPSET),
             '--output', tmp], capture_output=True, text=True,
            env=dict(os.environ,
                     TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2')))
        if result.returncode != 0 or not os.path.exists(tmp):
            raise UserError('the ONNX conversion of %s by tf2onnx failed (exit %d):\n%s'
                            % (saved_model_dir, result.returncode,
                               (result.stderr or result.stdout).strip()[-3000:]))
