"""Imports TensorFlow without the start-up notices it prints on a machine with no GPU (the CUDA probe
failure, the CUDA stub, oneDNN and CPU-feature notices), passing every other line it writes through.

TensorFlow writes these lines from C++ before its logging is configured, so TF_CPP_MIN_LOG_LEVEL does
not reach them; the CUDA probe (`failed call to cuInit`) is an error-level line written when the
devices are first listed. `import_tensorflow()` therefore runs the import and the device listing with
file descriptor 2 pointed at a temporary file, then writes back everything but the known notices.
"""

import contextlib
import os
import re
import sys
import tempfile

_NOTICES = [re.compile(p) for p in (
    r'^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$',
    r'^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\.',
    r'^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine',
    r'^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized',
    r'^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler',
)]
# The CUDA probe's failure, dropped only where no GPU was found and none was asked for.
_CUINIT = re.compile(r'^E\d{4} [\d:. ]+\d+ cuda_(platform|diagnostics|driver)\.cc:\d+\] '
                     r'failed call to cuInit')

_done = False


def startup_noise(line, gpus_found, gpu_requested):
    """True for a start-up line that says nothing to a user of a CPU-only machine."""
    if any(p.search(line) for p in _NOTICES):
        return True
    return bool(_CUINIT.search(line)) and not gpus_found and not gpu_requested


def _gpu_requested():
    """CUDA_VISIBLE_DEVICES names a device: the user expects a GPU, so the probe's failure matters."""
    value = os.environ.get('CUDA_VISIBLE_DEVICES')
    return value is not None and value.strip() not in ('', '-1')


@contextlib.contextmanager
def capture_stderr(drop):
    """Run the body with file descriptor 2 (C++ and Python stderr) going to a temporary file, then
    write back every line for which `drop(line)` is false."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured = tempfile.TemporaryFile()
    try:
        os.dup2(captured.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        text = captured.read().decode('utf-8', 'replace')
        captured.close()
        kept = [line for line in text.splitlines() if not drop(line)]
        if kept:
            sys.stderr.write('\n'.join(kept) + '\n')
            sys.stderr.flush()


def import_tensorflow():
    """Import TensorFlow and list its devices once, with the CPU-only start-up notices removed from
    what it writes to stderr. Later calls do nothing."""
    global _done
    if _done:
        return
    _done = True
    # C++ errors stay visible. INFO and WARNING lines are hidden (set TF_CPP_MIN_LOG_LEVEL=0 to see
    # them): grappler's cost estimator alone writes hundreds of "Error in PredictCost()" warnings
    # per AOFP search graph. Python-side TensorFlow warnings are not affected by this.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    found = []
    requested = _gpu_requested()
    with capture_stderr(lambda line: startup_noise(line, bool(found), requested)):
        import tensorflow as tf
        found.extend(tf.config.list_physical_devices('GPU'))  # the CUDA probe, now, not later
