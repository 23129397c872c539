"""Untrusted files never run code: crafted pickles (CIFAR-10 batches, clusters files) are refused
with one clear line and nothing written, hdf5 files are read as datasets only, and a scan of the
package sources keeps pickle.load, eval, shells and the like out."""

import ast
import io
import json
import os
import pathlib
import pickle
import shlex
import struct
import tarfile

import h5py
import numpy as np
import pytest
from numpy.lib import format as npy_format

from csgd.clusters_file import load_clusters, save_clusters
from datasets import download_and_convert_cifar10 as converter
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.safe_pickle import RefusedGlobal, safe_load

from conftest import REPO
from helpers import run_script

CONVERTER = os.path.join(REPO, 'datasets', 'download_and_convert_cifar10.py')
BATCHES = converter.TRAIN_BATCHES + (converter.TEST_BATCH,)
SYSTEM = '%s.system' % os.system.__module__  # how pickle names os.system: posix.system on Linux


class _Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, ('touch %s' % shlex.quote(self.marker),)


class _Reduce:
    """Pickles as `function(*args)`, with a BUILD state if given: hand-made NumPy pickles."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) + (() if self.state is None else (self.state,))


def _assert_payload_runs_under_plain_pickle(data, marker):
    """The test is not vacuous: plain pickle.loads of the same bytes does create the marker."""
    assert not os.path.exists(marker)
    pickle.loads(data)
    assert os.path.exists(marker)
    os.remove(marker)


def _batch(n, seed, extra=None):
    rng = np.random.default_rng(seed)
    batch = {b'batch_label': b'x', b'labels': [int(x) for x in rng.integers(0, 10, n)],
             b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8), b'filenames': [b'f'] * n}
    batch.update(extra or {})
    return batch


def _crafted_batch(marker):
    return pickle.dumps(_batch(3, 0, {b'extra': [{b'x': _Payload(marker)}]}))


def _snapshot(folder):
    """{relative path: bytes} of everything under folder (None if it does not exist)."""
    if not os.path.exists(folder):
        return None
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in pathlib.Path(folder).rglob('*') if p.is_file()}


def _earlier_output(folder):
    os.makedirs(folder)
    for name in ('cifar10_train.tfrecord', 'cifar10_test.tfrecord', 'labels.txt'):
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(b'earlier output of ' + name.encode())
    return _snapshot(folder)


def _assert_refused(result, name):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ''
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('error: %s is not a plain CIFAR-10 batch: it asks to load %s,'
                               % (name, SYSTEM)), lines[0]
    assert lines[0].endswith('(nothing of it was run)')


# -- CIFAR-10 batches ----------------------------------------------------------------------------
def test_crafted_batch_in_batches_dir_is_refused(tmp_path):
    marker, batches, out = tmp_path / 'marker', tmp_path / 'batches', str(tmp_path / 'out')
    batches.mkdir()
    for i, name in enumerate(BATCHES):  # the third is crafted: the first two read fine before it
        data = _crafted_batch(marker) if name == 'data_batch_3' else pickle.dumps(_batch(3, i))
        (batches / name).write_bytes(data)
    before, inputs = _earlier_output(out), _snapshot(str(batches))
    result = run_script(CONVERTER, ['--dataset_dir', out, '--batches_dir', str(batches),
                                    '--overwrite'], cwd=str(tmp_path), check=False)
    _assert_refused(result, str(batches / 'data_batch_3'))
    assert not marker.exists()
    assert _snapshot(out) == before and _snapshot(str(batches)) == inputs
    _assert_payload_runs_under_plain_pickle((batches / 'data_batch_3').read_bytes(), str(marker))


def test_crafted_batch_in_archive_is_refused(tmp_path):
    marker, archive, out = tmp_path / 'marker', tmp_path / 'cifar-10-python.tar.gz', tmp_path / 'o'
    crafted = _crafted_batch(marker)
    with tarfile.open(archive, 'w:gz') as tar:
        for i, name in enumerate(BATCHES):
            data = crafted if name == 'test_batch' else pickle.dumps(_batch(3, i))
            info = tarfile.TarInfo('cifar-10-batches-py/' + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = run_script(CONVERTER, ['--dataset_dir', str(out), '--archive', str(archive)],
                        cwd=str(tmp_path), check=False)
    _assert_refused(result, '%s:cifar-10-batches-py/test_batch' % archive)
    assert not marker.exists() and not out.exists()
    _assert_payload_runs_under_plain_pickle(crafted, str(marker))


def test_real_cifar_batches_load_as_with_pickle(subset_batches):
    for name in BATCHES + ('batches.meta',):
        with open(os.path.join(subset_batches, name), 'rb') as f:
            safe = safe_load(f, encoding='bytes')
        with open(os.path.join(subset_batches, name), 'rb') as f:
            plain = pickle.load(f, encoding='bytes')
        assert safe.keys() == plain.keys()
        for key, value in plain.items():
            if isinstance(value, np.ndarray):
                assert safe[key].dtype == value.dtype
                np.testing.assert_array_equal(safe[key], value)
            else:
                assert safe[key] == value


# -- the restricted unpickler ----------------------------------------------------------------------
@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_plain_numpy_data_round_trips(protocol):
    values = [np.arange(12, dtype=np.uint8).reshape(3, 4), np.array([1.5, -2], '>f4'),
              np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.arange(12).reshape(3, 4)[::2, 1:],
              np.array(['ab', 'c']), np.array([b'x']), np.zeros((0, 5)), np.array(True)]
    for value in values:
        loaded = safe_load(io.BytesIO(pickle.dumps(value, protocol=protocol)))
        assert loaded.dtype == value.dtype and loaded.flags.writeable
        np.testing.assert_array_equal(loaded, value)
    scalars = {np.int64(3): [np.float32(2.5), b'', 'text', None, (1, 2), 4.5, True]}
    assert safe_load(io.BytesIO(pickle.dumps(scalars, protocol=protocol))) == scalars
    objects = np.array([[{1: [2]}, None, 'x'], [2.5, b'y', (1,)]], dtype=object)
    loaded = safe_load(io.BytesIO(pickle.dumps(np.asfortranarray(objects), protocol=protocol)))
    assert loaded.shape == (2, 3) and loaded.tolist() == objects.tolist()


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's str (BINSTRING), as cPickle wrote the official batches."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj.encode('latin1') if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_python2_str


def test_python2_numpy1_batch_loads():
    """A batch as Python 2 and NumPy 1 wrote it: str keys, dtypes and data; numpy.core names."""
    batch = {'batch_label': 'training batch 1 of 5', 'labels': [3, 9, 0],
             'data': np.arange(3 * 3072).astype(np.uint8).reshape(3, 3072), 'filenames': ['a'] * 3}
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(batch)
    data = out.getvalue().replace(b'numpy._core', b'numpy.core')
    assert b'cnumpy.core.multiarray\n_reconstruct' in data and b'_codecs' not in data
    images, labels = converter.load_batch(io.BytesIO(data), 'data_batch_1')
    assert labels.tolist() == [3, 9, 0]
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(3, 3072), batch['data'])


def test_refused_name_is_one_printable_line():
    data = b'\x80\x04\x8c\x05os\nxx\x8c\x07sys\x1b[2J\x93.'  # STACK_GLOBAL of odd names
    with pytest.raises(RefusedGlobal) as info:
        safe_load(io.BytesIO(data))
    assert info.value.name.isprintable()


def test_numpy1_module_names_load():
    """Pickles written with NumPy 1 name numpy.core instead of NumPy 2's numpy._core."""
    data = pickle.dumps({0: np.arange(3), 1: np.int64(4)}, protocol=2).replace(b'numpy._core',
                                                                              b'numpy.core')
    assert b'numpy.core.multiarray' in data
    loaded = safe_load(io.BytesIO(data))
    np.testing.assert_array_equal(loaded[0], np.arange(3))
    assert loaded[1] == 4


@pytest.mark.parametrize('wrap', [lambda p: p, lambda p: [1, p], lambda p: {b'k': (p,)},
                                  lambda p: np.array([None, p], dtype=object)],
                         ids=['top', 'list', 'dict', 'object_array'])
@pytest.mark.parametrize('protocol', [2, 4])
def test_payload_anywhere_is_refused(tmp_path, wrap, protocol):
    marker = tmp_path / 'marker'
    data = pickle.dumps(wrap(_Payload(marker)), protocol=protocol)
    with pytest.raises(RefusedGlobal) as info:
        safe_load(io.BytesIO(data))
    assert info.value.name == SYSTEM
    assert isinstance(info.value, pickle.UnpicklingError) and not marker.exists()
    _assert_payload_runs_under_plain_pickle(data, str(marker))


def test_other_globals_are_refused():
    for value in (eval, print, complex(1, 2), np.float64, np.dtype([('a', 'f4')]),
                  np.ma.masked_array([1])):
        with pytest.raises(pickle.UnpicklingError):
            safe_load(io.BytesIO(pickle.dumps(value)))


def _forged_pointers():
    """Pickles that, through NumPy's own unpickling, would make arrays of forged object pointers."""
    from numpy._core import multiarray, numeric  # NumPy 2
    structured = np.dtype([('a', 'O')])
    return {
        'ndarray_buffer': _Reduce(np.ndarray, ((1,), np.dtype('O'), b'A' * 8)),
        'setstate_bytes': _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                                  (1, (1,), np.dtype('O'), False, b'A' * 8)),
        'structured_setstate': _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                                       (1, (1,), structured, False, b'A' * 8)),
        'frombuffer': _Reduce(numeric._frombuffer, (b'A' * 8, np.dtype('O'), (1,), 'C')),
        'structured_scalar': _Reduce(multiarray.scalar, (structured, b'A' * 8)),
        'dtype_state': _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                               (1, (1,), _Reduce(np.dtype, ('V8', False, True),
                                                 (3, '|', None, ('a',), {'a': (np.dtype('O'), 0)},
                                                  8, 1, 0)), False, b'A' * 8)),
    }


@pytest.mark.skipif(not hasattr(np, '_core'), reason='written for NumPy 2 module names')
@pytest.mark.parametrize('name', sorted(_forged_pointers() if hasattr(np, '_core') else ()))
def test_forged_object_pointers_are_refused(name):
    """NumPy's ndarray(buffer=) and __setstate__ would accept these (and crash or worse on use)."""
    with pytest.raises(pickle.UnpicklingError):
        safe_load(io.BytesIO(pickle.dumps(_forged_pointers()[name], protocol=2)))


# -- clusters files --------------------------------------------------------------------------------
def test_crafted_clusters_file_is_refused(tmp_path):
    marker, path = tmp_path / 'marker', tmp_path / 'dc40_csgd1_itr0_eqcls.npy'
    np.save(path, {0: [[0, 1], [2]], 1: [[0], _Payload(marker)]}, allow_pickle=True)
    before = path.read_bytes()
    with pytest.raises(UserError) as info:
        load_clusters(str(path))
    message = str(info.value)
    assert '\n' not in message and message.startswith('%s is not a valid clusters file' % path)
    assert 'asks to load %s' % SYSTEM in message
    assert 'delete it to recompute the clusters' in message
    assert not marker.exists() and path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]
    np.load(path, allow_pickle=True)  # what the original and the old loader did: runs the payload
    assert marker.exists()


def test_original_pickled_clusters_npy_loads(tmp_path):
    path = str(tmp_path / 'dc40_csgd1_itr0_eqcls.npy')
    original = {0: [[0, 2], [1]], 5: [[3], [0, 1, 2]], np.int64(7): [np.arange(2), [2]]}
    np.save(path, original, allow_pickle=True)
    assert load_clusters(path) == {0: [[0, 2], [1]], 5: [[3], [0, 1, 2]], 7: [[0, 1], [2]]}


def test_numpy1_written_clusters_npy_loads(tmp_path):
    """The original ran NumPy 1: its files pickle `numpy.core...` (protocol 2 or 3)."""
    path = tmp_path / 'eqcls.npy'
    plans = {0: [[0, 2], [1]], 3: [[0], [1]]}
    with open(path, 'wb') as f:
        npy_format.write_array_header_1_0(f, {'descr': '|O', 'fortran_order': False, 'shape': ()})
        f.write(pickle.dumps(np.array(plans, dtype=object), protocol=2)
                .replace(b'numpy._core', b'numpy.core'))
    assert load_clusters(str(path)) == plans


def test_clusters_json_round_trip(tmp_path):
    path = str(tmp_path / 'dc40_csgd1_itr0_eqcls.json')
    plans = {3: [[0, 4], [1]], 0: [np.array([2, 1]), [0]]}
    save_clusters(path, plans)
    assert os.listdir(tmp_path) == ['dc40_csgd1_itr0_eqcls.json']  # no temporary file left
    with open(path) as f:
        content = json.load(f)
    assert content == {'format': 'clusters-v1', 'layers': {'0': [[2, 1], [0]], '3': [[0, 4], [1]]}}
    loaded = load_clusters(path)
    assert loaded == {0: [[2, 1], [0]], 3: [[0, 4], [1]]}
    assert all(type(i) is int for clusters in loaded.values() for c in clusters for i in c)
    save_clusters(path, {})
    assert load_clusters(path) == {}


@pytest.mark.parametrize('content', [
    b'{"format": "clusters-v1", "layers": {"0": [[0, -1]]}}',
    b'{"format": "clusters-v1", "layers": {"0": [[0, 1.5]]}}',
    b'{"format": "clusters-v1", "layers": {"0": [[0, true]]}}',
    b'{"format": "clusters-v1", "layers": {"x": [[0]]}}',
    b'{"format": "clusters-v1", "layers": {"0": [[0], [0]]}}',
    b'{"format": "clusters-v1", "layers": {"0": [[]]}}',
    b'{"format": "clusters-v1", "layers": [[0]]}',
    b'{"layers": {"0": [[0]]}}',
    b'{"format": "clusters-v1", ',
    b'not a clusters file',
    b'',
], ids=lambda c: c.decode()[:40])
def test_malformed_clusters_file_is_a_one_line_user_error(tmp_path, content):
    path = tmp_path / 'eqcls.json'
    path.write_bytes(content)
    with pytest.raises(UserError, match='delete it to recompute the clusters') as info:
        load_clusters(str(path))
    assert '\n' not in str(info.value) and str(path) in str(info.value)


def test_non_clusters_npy_is_a_user_error(tmp_path):
    for value in (np.arange(3), np.array([{0: [[0]]}], dtype=object)):
        np.save(tmp_path / 'x.npy', value, allow_pickle=True)
        with pytest.raises(UserError, match='not a pickled dict of clusters'):
            load_clusters(str(tmp_path / 'x.npy'))


# -- hdf5: datasets only ---------------------------------------------------------------------------
def _virtual(f, other):
    layout = h5py.VirtualLayout(shape=(4,), dtype='f8')
    layout[:] = h5py.VirtualSource(other, 'secret', shape=(4,))
    f.create_virtual_dataset('w:0', layout)


def _external_storage(f, other):
    raw = other + '.raw'
    np.arange(4.0).tofile(raw)
    f.create_dataset('w:0', shape=(4,), dtype='f8', external=[(raw, 0, h5py.h5f.UNLIMITED)])


@pytest.mark.parametrize('build, problem', [
    (lambda f, other: f.__setitem__('w:0', h5py.ExternalLink(other, 'secret')), 'link to another'),
    (lambda f, other: f.__setitem__('w:0', h5py.SoftLink('/deps')), 'soft link'),
    (lambda f, other: f.create_group('w:0'), 'group'),
    (_virtual, 'virtual dataset'),
    (_external_storage, 'stored outside the file'),
    (lambda f, other: f.create_dataset('w:0', data=np.array([b'text'])), 'dtype'),
], ids=['external_link', 'soft_link', 'group', 'virtual', 'external_storage', 'strings'])
def test_hdf5_reads_datasets_only(tmp_path, build, problem):
    other = str(tmp_path / 'other.hdf5')
    with h5py.File(other, 'w') as f:
        f['secret'] = np.arange(4.0)
    path = str(tmp_path / 'w.hdf5')
    with h5py.File(path, 'w') as f:
        f['deps'] = np.array([4, 2])
        build(f, other)
    with pytest.raises(UserError, match="entry 'w:0' .*%s" % problem):
        hdf5_io.read_hdf5(path)


def test_hdf5_hard_links_within_the_file_are_fine(tmp_path):
    path = str(tmp_path / 'w.hdf5')
    with h5py.File(path, 'w') as f:
        f['deps'] = np.array([4, 2])
        f['fc+bias:0'] = f['deps']
    loaded = hdf5_io.read_hdf5(path)
    assert loaded.deps == (4, 2) and loaded.weights['fc/bias'].tolist() == [4, 2]


# -- source scan -----------------------------------------------------------------------------------
PACKAGES = ('tf_benchmarks', 'aofp', 'csgd', 'datasets', 'bench')
# Any use (call or reference) of these names, resolved through imports, is refused: each can run
# code from data or hand a string to a shell.
FORBIDDEN = {
    'pickle.load': 'unpickling runs code; use tf_benchmarks.files.safe_pickle.safe_load',
    'pickle.loads': 'unpickling runs code; use tf_benchmarks.files.safe_pickle.safe_load',
    'pickle.Unpickler': 'unpickling runs code; use tf_benchmarks.files.safe_pickle.safe_load',
    '_pickle.load': 'unpickling runs code', '_pickle.loads': 'unpickling runs code',
    '_pickle.Unpickler': 'unpickling runs code', 'dill.load': 'unpickling runs code',
    'dill.loads': 'unpickling runs code', 'joblib.load': 'unpickling runs code',
    'pandas.read_pickle': 'unpickling runs code', 'shelve.open': 'shelves are pickles',
    'marshal.load': 'marshal loads code objects', 'marshal.loads': 'marshal loads code objects',
    'eval': 'runs a string as code', 'exec': 'runs a string as code',
    'builtins.eval': 'runs a string as code', 'builtins.exec': 'runs a string as code',
    'os.system': 'runs a shell', 'os.popen': 'runs a shell',
    'subprocess.getoutput': 'runs a shell', 'subprocess.getstatusoutput': 'runs a shell',
}
ALLOWED_USES = {('tf_benchmarks/files/safe_pickle.py', 'pickle.Unpickler')}  # the restricted subclass
# Calls refused when this keyword is given anything but a literal False (or hidden in **kwargs).
KEYWORD_RULES = {'numpy.load': 'allow_pickle', 'numpy.lib.format.read_array': 'allow_pickle',
                 'subprocess.*': 'shell'}


def _import_names(tree):
    """Local name -> dotted name it stands for (`np` -> `numpy`, `loads` -> `pickle.loads`)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split('.')[0]
                names[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = '%s.%s' % (node.module, alias.name)
    return names


def _dotted(node, names):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return '.'.join([names.get(node.id, node.id)] + parts[::-1])


def _keyword_rule(name):
    for pattern, keyword in KEYWORD_RULES.items():
        if name == pattern or (pattern.endswith('.*') and name.startswith(pattern[:-1])):
            return keyword
    return None


def scan_source(source, filename):
    """['file:line: what (why)'] for every forbidden use in one file's source."""
    tree = ast.parse(source, filename)
    names, found = _import_names(tree), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            name = _dotted(node, names)
            if name in FORBIDDEN and (filename, name) not in ALLOWED_USES:
                found.append('%s:%d: %s (%s)' % (filename, node.lineno, name, FORBIDDEN[name]))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, names) or ''
            keyword = _keyword_rule(name)
            for kw in node.keywords if keyword else ():
                if kw.arg is None or (kw.arg == keyword and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False)):
                    found.append('%s:%d: %s with %s=%s' % (
                        filename, node.lineno, name, keyword,
                        ast.unparse(kw.value) if kw.arg else '**' + ast.unparse(kw.value)))
    return found


def test_package_sources_have_no_door_for_code():
    found = []
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in sorted(f for f in files if f.endswith('.py')):
                path = os.path.join(folder, name)
                with open(path) as f:
                    found += scan_source(f.read(), os.path.relpath(path, REPO).replace(os.sep, '/'))
    assert not found, 'untrusted data could run code here:\n' + '\n'.join(found)


def test_scanner_catches_planted_calls():
    planted = '\n'.join([
        'import pickle, os, subprocess',           # 1
        'import numpy as np',                       # 2
        'from pickle import loads as l',            # 3
        'from marshal import loads',                # 4
        'pickle.load(f)',                           # 5
        'l(data)',                                  # 6
        'np.load(p, allow_pickle=True)',            # 7
        'eval("1")',                                # 8
        'os.system("ls")',                          # 9
        'subprocess.run("ls", shell=True)',         # 10
        'subprocess.check_output(cmd, **kw)',       # 11
        'loads(code)',                              # 12
        'step = exec',                              # 13
        'class U(pickle.Unpickler): pass',          # 14
        'np.load(p, allow_pickle=flag)',            # 15
    ])
    found = scan_source(planted, 'planted.py')
    assert sorted(int(f.split(':')[1]) for f in found) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert found[0].startswith('planted.py:')
    clean = '\n'.join(['import numpy as np', 'import subprocess, re', 'np.load(p)',
                       'np.load(p, allow_pickle=False)', 'subprocess.run(["ls"], check=True)',
                       're.compile("x")', 'model.eval()', 'def exec_step(): pass'])
    assert scan_source(clean, 'clean.py') == []
    assert scan_source('import pickle\nclass U(pickle.Unpickler): pass',
                       'tf_benchmarks/files/safe_pickle.py') == []
