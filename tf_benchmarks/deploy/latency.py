"""A model's measured latency on this machine, for `summary --latency` and every finished stage of
`prune`, `csgd1` and `magnitude1`: the weights file exported (SavedModel and TFLite, in a temporary
directory) and timed in a fresh process (deploy/latency_worker.py) against the run's base, the
calls of the two models alternating: batch 1 (median and 95th percentile, ms) and a throughput
batch (images/s from the median call), with the speed-up over the base, the CPU model name, the
core count and the load average."""

import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import tempfile

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy.export import export_file
from tf_benchmarks.deploy.fresh_process import run_script
from tf_benchmarks.pruning.file_model import read_model_file

LATENCY_ENV = 'AOFP_CSGD_LATENCY'   # 0: no latency measured in the stages by default (the tests)
DEFAULT_CALLS = 50
DEFAULT_BATCH = 32
MAX_CALLS = 100000
MAX_BATCH = 4096
RUNTIMES = ('savedmodel', 'tflite', 'onnxruntime')


def default_on():
    """The default of --latency: on, unless $AOFP_CSGD_LATENCY is 0."""
    return os.environ.get(LATENCY_ENV, '1').strip() != '0'


@dataclasses.dataclass
class LatencySettings:
    """How latency is measured: batch-1 calls per model and runtime (after a warm-up), the
    throughput batch, and the calls at it (a fifth of `calls`, at least 1)."""
    calls: int = DEFAULT_CALLS
    batch: int = DEFAULT_BATCH

    @property
    def throughput_calls(self):
        return max(1, self.calls // 5)


def check_settings(calls, batch):
    if not 1 <= calls <= MAX_CALLS:
        raise UserError('--latency_calls must be between 1 and %d, got %d' % (MAX_CALLS, calls))
    if not 1 <= batch <= MAX_BATCH:
        raise UserError('--latency_batch must be between 1 and %d, got %d' % (MAX_BATCH, batch))
    return LatencySettings(calls, batch)


def cpu_name():
    """The CPU's model name as lscpu gives it (/proc/cpuinfo), else platform's."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown'


def machine():
    """Where a measurement ran: CPU model, cores, the TFLite threads, the load average."""
    load = list(os.getloadavg()) if hasattr(os, 'getloadavg') else None
    return dict(cpu=cpu_name(), cpu_count=os.cpu_count(), tflite_threads=os.cpu_count(),
                tensorflow_threads='one intra-op and one inter-op thread per core (default)',
                load_average=[round(x, 2) for x in load] if load else None)


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _figures(series, batch):
    out = dict(batch1_median_ms=1000 * statistics.median(series['batch1_s']),
               batch1_p95_ms=1000 * _percentile(series['batch1_s'], 0.95),
               images_per_s=batch / statistics.median(series['batch_s']))
    for name, value in out.items():
        if not (math.isfinite(value) and value > 0):
            raise UserError('the latency measurement gave %s = %r; measure again' % (name, value))
    return out


def run_worker(directories, settings, image_size):
    """[{runtime: figures}] of the export directories, timed in one fresh process."""
    spec = dict(dirs=list(directories), calls=settings.calls, batch=settings.batch,
                throughput_calls=settings.throughput_calls, image_size=image_size)
    failure = 'the latency measurement of %s failed' % ', '.join(directories)
    result = run_script('latency_worker.py', [json.dumps(spec)], failure)
    lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
    if not lines:
        raise UserError('%s:\n%s' % (failure, result.stderr.strip()[-3000:]))
    return [{runtime: _figures(series, settings.batch) for runtime, series in r.items()}
            for r in json.loads(lines[-1][7:])]


def _speedups(model, base):
    return {runtime: dict(batch1=base[runtime]['batch1_median_ms'] /
                          model[runtime]['batch1_median_ms'],
                          throughput=model[runtime]['images_per_s'] / base[runtime]['images_per_s'])
            for runtime in model if runtime in base}


def _onnx_note(figures):
    if 'onnxruntime' in figures:
        return None
    import importlib.util
    if not importlib.util.find_spec('onnxruntime'):
        return 'not measured: onnxruntime is not importable'
    return 'not measured: the export has no model.onnx'


class LatencyMeter:
    """Measures weights files against one base (a file, exported once); a file at widths measured
    before reuses that measurement (latency depends on the widths, not the weights). `close()`
    removes the exports."""

    def __init__(self, settings, base_path=None, log=print):
        self.settings = settings
        self.base_path = base_path
        self.log = log
        self._work = None
        self._exports = {}   # widths -> export directory
        self._measured = {}  # widths -> entry

    def _export(self, path):
        widths = tuple(read_model_file(path).deps)
        if widths not in self._exports:
            if self._work is None:
                self._work = tempfile.mkdtemp(prefix='latency-')
            out = os.path.join(self._work, 'export%d' % len(self._exports))
            export_file(path, out, tflite=True, log=lambda message: None)
            self._exports[widths] = out
        return widths, self._exports[widths]

    def measure(self, path):
        """The latency entry of `path`: its figures per runtime and, with a base at other widths,
        the base's and the speed-up, measured in the same process, the calls alternating."""
        widths, directory = self._export(path)
        if widths in self._measured:
            first = self._measured[widths]
            return dict(first, file=path, same_widths_as=first['file'])
        mf = read_model_file(path)
        dirs = [directory]
        base_widths = None
        if self.base_path:
            base_widths, base_dir = self._export(self.base_path)
            if base_widths != widths:
                dirs.append(base_dir)
        figures = run_worker(dirs, self.settings, mf.input_spec.image_size)
        entry = dict(file=path, machine=machine(), calls=self.settings.calls,
                     throughput_batch=self.settings.batch,
                     throughput_calls=self.settings.throughput_calls,
                     image_size=mf.input_spec.image_size, model=figures[0])
        if self.base_path:
            base = figures[1] if len(figures) > 1 else figures[0]
            entry.update(base=base, base_file=self.base_path, speedup=_speedups(figures[0], base))
        note = _onnx_note(figures[0])
        if note:
            entry['onnxruntime'] = note
        self._measured[widths] = entry
        self.log(describe(entry))
        return entry

    def close(self):
        if self._work:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
            self._exports = {}


def describe(entry):
    """One log line: `latency of F (CPU, 2 cores, load 2.1): tflite batch 1 1.23 ms (p95 ...)`."""
    parts = []
    for runtime in RUNTIMES:
        f = entry['model'].get(runtime)
        if not f:
            continue
        text = '%s batch 1 %.3f ms (p95 %.3f), batch %d %.1f images/s' % (
            runtime, f['batch1_median_ms'], f['batch1_p95_ms'], entry['throughput_batch'],
            f['images_per_s'])
        speedup = entry.get('speedup', {}).get(runtime)
        if speedup:
            text += ' (x%.2f, x%.2f the base)' % (speedup['batch1'], speedup['throughput'])
        parts.append(text)
    m = entry['machine']
    name = entry['file'] + (' = %s (same widths)' % entry['same_widths_as']
                            if entry.get('same_widths_as') else '')
    return 'latency of %s (%s, %d cores, load %s, %d calls): %s' % (
        name, m['cpu'], m['cpu_count'],
        m['load_average'][0] if m['load_average'] else '?', entry['calls'], '; '.join(parts))
