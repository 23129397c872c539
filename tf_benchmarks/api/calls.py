"""The API's functions. Networks load in-process (a .py file is imported, as `--model` does); the
commands run as the drivers' own processes (`aofp/aofp_standalone.py`, `csgd/csgd_standalone.py`)
in a working directory, exactly as typed on a command line, so their stages, run.json, resuming,
locks and checks are the CLIs' own, and a failure is a UserError with the driver's error line."""

import dataclasses
import json
import os
import subprocess
import sys
from typing import Dict, List

from tf_benchmarks.core.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = {'aofp': os.path.join(REPO, 'aofp', 'aofp_standalone.py'),
           'csgd': os.path.join(REPO, 'csgd', 'csgd_standalone.py')}
# method -> (driver, mode of its pruning command)
PRUNE_MODES = {'aofp': ('aofp', 'prune'), 'csgd': ('csgd', 'csgd1'),
               'magnitude': ('csgd', 'magnitude1')}


@dataclasses.dataclass
class RunResult:
    """A finished command: its argv, output and working directory."""
    argv: List[str]
    stdout: str
    stderr: str
    workdir: str

    def results(self):
        """The working directory's results.json (prune, csgd1, magnitude1), or None."""
        path = os.path.join(self.workdir, 'results.json')
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)


def load_network(model):
    """The ModelSpec of `model`: a shipped name, a .py file (imported: your code), a .json
    description or a weight file carrying one. It has .groups, .trace(deps), .default_deps,
    .default_target_layers and .network (the description)."""
    from tf_benchmarks.pruning.file_model import resolve_model
    return resolve_model(model)


def network_description(model):
    """The network description (a JSON-able dict) of `model` (see load_network)."""
    return load_network(model).network


def summary(path, base=None, model=None):
    """Per-layer widths, FLOPs and parameters of a weight file (the `summary` mode's, as a dict)."""
    from tf_benchmarks.deploy import layer_summary
    return json.loads(layer_summary.format_json(layer_summary.summarize_file(
        path, base, load_network(model) if model else None)))


# Flags naming files: a path that exists from the caller's directory is passed absolute, since
# the command runs in its working directory.
PATH_FLAGS = ('model', 'data_dir', 'init_hdf5', 'base_weights', 'clusters_file', 'base', 'out')


def _flag_args(flags: Dict):
    """--name=value arguments: True -> --name, False -> --noname, a list comma-separated."""
    args = []
    for name, value in sorted(flags.items()):
        if value is None:
            continue
        if name in PATH_FLAGS and isinstance(value, (str, os.PathLike)) and os.path.exists(value):
            value = os.path.abspath(value)
        if isinstance(value, bool):
            args.append('--%s%s' % ('' if value else 'no', name))
        elif isinstance(value, (list, tuple)):
            args.append('--%s=%s' % (name, ','.join(str(v) for v in value)))
        else:
            args.append('--%s=%s' % (name, value))
    return args


def run(driver, mode, *files, workdir='.', timeout=None, **flags):
    """Run `driver` ('aofp' or 'csgd') `mode` [files] --flag=value ... in `workdir`; returns a
    RunResult, or raises a UserError with the driver's error line (exit status 2) or its last
    output (another failure)."""
    if driver not in SCRIPTS:
        raise UserError('driver %r: the drivers are aofp and csgd' % driver)
    os.makedirs(workdir, exist_ok=True)
    files = [os.path.abspath(f) if os.path.exists(str(f)) else str(f) for f in files]
    argv = [sys.executable, SCRIPTS[driver], mode] + files + _flag_args(flags)
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED='1'))
    if done.returncode != 0:
        errors = [l[len('error: '):] for l in done.stderr.splitlines() if l.startswith('error: ')]
        raise UserError(errors[-1] if errors else '%s %s failed (exit status %d): %s'
                        % (driver, mode, done.returncode, done.stderr.strip()[-2000:]))
    return RunResult(argv[1:], done.stdout, done.stderr, os.path.abspath(workdir))


def _model_flags(model, flags):
    if model is not None:
        flags['model'] = model
    return flags


def train(model=None, method='aofp', workdir='.', **flags):
    """`train`: the base model -> <name>_scratch_savedweights.hdf5 in `workdir`, with the recipe
    of `method`'s driver ('aofp', or 'csgd'/'magnitude': C-SGD's)."""
    driver = PRUNE_MODES[method][0]
    return run(driver, 'train', workdir=workdir, **_model_flags(model, flags))


def prune(method, model=None, workdir='.', **flags):
    """Prune the base in `workdir` with 'aofp' (prune), 'csgd' (csgd1) or 'magnitude'
    (magnitude1); `flags` are the driver's (target_deps='1/2', itr_schedule=0.3, round_to=8...)."""
    if method not in PRUNE_MODES:
        raise UserError('method %r: the methods are %s' % (method, ', '.join(PRUNE_MODES)))
    driver, mode = PRUNE_MODES[method]
    return run(driver, mode, workdir=workdir, **_model_flags(model, flags))


def evaluate(path, model=None, workdir='.', **flags):
    """`eval FILE`: the test split's top-1 and top-5 of a weight file (its own network unless
    `model` is given); returns the RunResult (the line is in its stdout)."""
    return run('aofp', 'eval', path, workdir=workdir, **_model_flags(model, flags))


def export(path, out, tflite=False, model=None, workdir='.', **flags):
    """`export FILE --out DIR`: a SavedModel (and TFLite file) with labels.txt and export.json."""
    return run('aofp', 'export', path, workdir=workdir, out=os.path.abspath(out), tflite=tflite,
               **_model_flags(model, flags))
