"""Running one of deploy's scripts (tflite_convert.py, runtime_check.py, latency_worker.py,
keras_write.py) in a fresh Python process, where TensorFlow runs eagerly whatever the driver set:
a failure is one UserError with the script's last lines of stderr."""

import os
import subprocess
import sys

from tf_benchmarks.core.errors import UserError


def run_script(name, args, failure):
    """The CompletedProcess of deploy/`name` run on `args` (text output captured); a UserError
    '`failure`:' plus the last 3000 characters of stderr if it exits nonzero."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    result = subprocess.run([sys.executable, script] + list(args), capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError('%s:\n%s' % (failure, result.stderr.strip()[-3000:]))
    return result
