"""Times exported models in a fresh process (TensorFlow 2 in eager mode, as a deployment loads the
files; the drivers run in graph mode): the SavedModel's serving signature, the TFLite interpreter
(one thread per core) and, where onnxruntime is importable and the directory holds `model.onnx`,
ONNX Runtime. Batch-1 calls and calls at the throughput batch alternate between the models and the
runtimes in blocks, so a load that comes and goes hits all alike; prints one `RESULT {json}` line.

    python tf_benchmarks/deploy/latency_worker.py '{"dirs": [...], "calls": 50, "batch": 32,
                                                     "throughput_calls": 10, "image_size": 32}'
"""

import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tf_benchmarks.core.tf_startup import import_tensorflow  # noqa: E402

BLOCK = 5  # timed calls per turn of one model and runtime
WARMUP = 3


def _runners(directory, tf, batch_sizes):
    """{runtime: {batch: callable(images)}} of one export directory."""
    import warnings
    serving = tf.saved_model.load(directory).signatures['serving_default']
    out = {'savedmodel': {b: (lambda images: serving(images=tf.constant(images))['logits'].numpy())
                          for b in batch_sizes}}
    tflite = os.path.join(directory, 'model.tflite')
    if os.path.exists(tflite):
        out['tflite'] = {}
        for b in batch_sizes:  # one interpreter per batch size: no resize between calls
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                interpreter = tf.lite.Interpreter(tflite, num_threads=os.cpu_count())
            runner = interpreter.get_signature_runner('serving_default')
            out['tflite'][b] = (lambda r: lambda images: r(images=images)['logits'])(runner)
    onnx = os.path.join(directory, 'model.onnx')
    if os.path.exists(onnx) and importlib.util.find_spec('onnxruntime'):
        import onnxruntime
        session = onnxruntime.InferenceSession(onnx, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        out['onnxruntime'] = {b: (lambda images: session.run(None, {name: images})[0])
                              for b in batch_sizes}
    return out


def measure(spec):
    import numpy as np
    import_tensorflow()
    import tensorflow as tf
    size, batch = spec['image_size'], spec['batch']
    rng = np.random.default_rng(0)
    images = {b: rng.integers(0, 256, (b, size, size, 3)).astype(np.uint8) for b in {1, batch}}
    runners = [_runners(d, tf, sorted(images)) for d in spec['dirs']]
    plan = [(i, runtime, kind, b, calls)
            for kind, b, calls in (('batch1_s', 1, spec['calls']),
                                   ('batch_s', batch, spec['throughput_calls']))
            for i, r in enumerate(runners) for runtime in r]
    times = {key[:3]: [] for key in plan}
    for i, runtime, _, b, _ in plan:
        for _ in range(WARMUP):
            runners[i][runtime][b](images[b])
    while True:
        pending = [p for p in plan if len(times[p[:3]]) < p[4]]
        if not pending:
            break
        for i, runtime, kind, b, calls in pending:
            run, series = runners[i][runtime][b], times[i, runtime, kind]
            for _ in range(min(BLOCK, calls - len(series))):
                start = time.perf_counter()
                run(images[b])
                series.append(time.perf_counter() - start)
    result = [{} for _ in runners]
    for (i, runtime, kind), values in times.items():
        result[i].setdefault(runtime, {})[kind] = values
    print('RESULT ' + json.dumps(result), flush=True)


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    measure(json.loads(sys.argv[1]))
