"""hdf5 weight files in the originals' format, so weights move between this project and the TF1 code.

One dataset per variable, keyed by the variable name with `/` replaced by `+` and a `:0` suffix
(`v0+cg+conv0+conv2d+kernel:0`), plus `deps` (int widths) and, in AOFP tuned files,
`base_mask_value{i}` (0/1 float masks). Files are written to a temporary name and renamed.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np

from tf_benchmarks.errors import UserError

DEPS_KEY = 'deps'
MASK_KEY_PREFIX = 'base_mask_value'
_MASK_KEY = re.compile(r'^%s(\d+)$' % MASK_KEY_PREFIX)
# Removed from both file keys and graph names before matching (as the original loaders do).
_NORMALIZE = [re.compile(p) for p in (r':0$', r'tower_\d+/', r'/ExponentialMovingAverage',
                                      r'^v\d+/')]


def encode_key(name):
    """Variable name -> hdf5 key: `/` -> `+`, with a `:0` suffix."""
    if not name.endswith(':0'):
        name += ':0'
    return name.replace('/', '+')


def decode_key(key):
    """hdf5 key -> variable name (without `:0`)."""
    name = key.replace('+', '/')
    return name[:-2] if name.endswith(':0') else name


def normalize_name(name):
    """Name used to match file entries with graph variables (`v0/cg/conv0/...:0` -> `cg/conv0/...`)."""
    for pattern in _NORMALIZE:
        name = pattern.sub('', name)
    return name


@dataclasses.dataclass
class WeightFile:
    """The contents of a weights file: variables by name (no `:0`), widths and AOFP masks."""
    weights: Dict[str, np.ndarray]
    deps: Optional[Tuple[int, ...]] = None
    masks: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)


def atomic_path(path):
    return '%s.tmp-%d' % (path, os.getpid())


def save_hdf5(path, weights, deps=None, masks=None):
    """Write weights (name -> array) plus optional deps and masks; temporary name, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = atomic_path(path)
    try:
        with h5py.File(tmp, 'w') as f:
            for name, value in weights.items():
                f.create_dataset(encode_key(name), data=np.asarray(value))
            if deps is not None:
                f.create_dataset(DEPS_KEY, data=np.asarray(deps, dtype=np.int64))
            for layer, mask in sorted((masks or {}).items()):
                f.create_dataset(MASK_KEY_PREFIX + str(layer),
                                 data=np.asarray(mask, dtype=np.float32))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_hdf5(path):
    """Read a weights file into a WeightFile; a missing or unreadable file is a UserError."""
    if not os.path.exists(path):
        raise UserError('weights file %s does not exist' % path)
    try:
        with h5py.File(path, 'r') as f:
            raw = {key: np.asarray(f[key]) for key in f.keys()}
    except (OSError, KeyError) as e:
        raise UserError('cannot read %s as an hdf5 weights file (%s); is it a complete file '
                        'written by this project or the original code?' % (path, e))
    result = WeightFile(weights={})
    for key, value in raw.items():
        mask = _MASK_KEY.match(key)
        if key == DEPS_KEY:
            result.deps = tuple(int(d) for d in np.ravel(value))
        elif mask:
            result.masks[int(mask.group(1))] = value.astype(np.float32)
        else:
            result.weights[decode_key(key)] = value
    return result


@dataclasses.dataclass
class LoadReport:
    matched: List[str]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, tuple, tuple]]

    def summary(self):
        return '%d tensors loaded, %d missing, %d unexpected, %d with a wrong shape' % (
            len(self.matched), len(self.missing), len(self.unexpected), len(self.mismatched))


def match_weights(shapes, weights):
    """Match graph variables (name -> shape) with file weights (name -> array) by normalized name.

    Returns (assignments: graph name -> array, LoadReport).
    """
    by_norm = {}
    for name, value in weights.items():
        by_norm[normalize_name(name)] = (name, value)
    assignments, report = {}, LoadReport([], [], [], [])
    used = set()
    for name, shape in shapes.items():
        norm = normalize_name(name)
        if norm not in by_norm:
            report.missing.append(name)
            continue
        used.add(norm)
        file_name, value = by_norm[norm]
        if tuple(value.shape) != tuple(shape):
            report.mismatched.append((name, tuple(shape), tuple(value.shape)))
            continue
        assignments[name] = value
        report.matched.append(name)
    report.unexpected = sorted(by_norm[n][0] for n in by_norm if n not in used)
    return assignments, report


def check_report(report, source, allow_missing=False):
    """Raise a UserError naming the problem entries if the load is not clean enough."""
    if report.mismatched:
        lines = ['  %s: graph %s, file %s' % m for m in report.mismatched[:10]]
        raise UserError('%s does not fit this model: %d tensors have the wrong shape:\n%s\n'
                        'Rebuild the model with the widths (deps) stored in that file, or pass a '
                        'file of this architecture.' % (source, len(report.mismatched),
                                                         '\n'.join(lines)))
    if report.missing and not allow_missing:
        shown = ', '.join(report.missing[:8]) + (' ...' if len(report.missing) > 8 else '')
        raise UserError('%s lacks %d of the model\'s variables (%s); it belongs to another '
                        'architecture or is incomplete' % (source, len(report.missing), shown))
