"""`import FILE.pth --out FILE.hdf5`: torchvision's ResNet-50 state dict read without torch.

Against torch itself without torch: tests/fixtures/torch_resnet50_w16*.pth were written once by
torch (tests/fixtures/make_torch_resnet50.py: torchvision's module names at widths / 16, 10
classes, random BN statistics) in both of torch's layouts, with torch's logits for two images; the
imported file must reproduce them in our graph. Damaged and crafted files are made here by a small
writer of torch's layouts (`_write_pth`) from the fixture's tensors.
"""

import io
import os
import pickle
import shlex
import zipfile

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy.torch_import import import_torch_file
from tf_benchmarks.engine.weights import key_variables, load_weights
from tf_benchmarks.files import hdf5_io, torch_checkpoint
from tf_benchmarks.models import resnet50_model
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.convnet_builder import ConvNetBuilder

from conftest import REPO
from helpers import error_lines, run_driver_cases

FIXTURES = os.path.join(REPO, 'tests', 'fixtures')
ZIP = os.path.join(FIXTURES, 'torch_resnet50_w16.pth')
LEGACY = os.path.join(FIXTURES, 'torch_resnet50_w16_legacy.pth')
LOGITS = os.path.join(FIXTURES, 'torch_resnet50_w16_logits.npz')
# The fixture's widths: the stem 4, internal widths 64/128/256/512 / 16, expansion 4.
FIXTURE_DEPS = tuple([4] + sum(([w * 4] + [w, w, w * 4] * n for n, w in
                                zip((3, 4, 6, 3), (4, 8, 16, 32))), []))
SYSTEM = '%s.system' % os.system.__module__  # how pickle names os.system: posix.system on Linux


def _fixture_arrays():
    return torch_checkpoint.open_checkpoint(ZIP).read(None)


# -- a writer of torch's two layouts, for crafted files ---------------------------------------------
class _Name:
    """A global by name (pickled as GLOBAL module name, without importing it)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError('only pickled')


class _Reduce:
    """Pickles as `function(*args)`, then `items` set as a dict's (SETITEMS)."""

    def __init__(self, function, args, items=None):
        self.function, self.args, self.items = function, args, items

    def __reduce__(self):
        return self.function, self.args, None, None, iter(self.items or ())


class _StorageRef:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


_TYPES = {np.dtype('float32'): 'FloatStorage', np.dtype('int64'): 'LongStorage',
          np.dtype('float64'): 'DoubleStorage', np.dtype('float16'): 'HalfStorage'}


class _TorchPickler(pickle._Pickler):
    """Pickles _Name as a bare GLOBAL and _StorageRef as torch's persistent id."""
    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Name] = lambda self, obj: self.write(
        pickle.GLOBAL + ('%s\n%s\n' % (obj.module, obj.name)).encode())

    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, _StorageRef):
            return None
        pid = ('storage', _Name('torch', _TYPES[obj.dtype]), obj.key, 'cpu', obj.numel)
        return pid + (None,) if self.legacy else pid


def _tensor(array, key):
    array = np.ascontiguousarray(array)
    stride = tuple(s // array.itemsize for s in array.strides)
    return _Reduce(_Name('torch._utils', '_rebuild_tensor_v2'),
                   (_StorageRef(key, array.dtype, array.size), 0, array.shape, stride, False,
                    _Reduce(_Name('collections', 'OrderedDict'), ())))


def _data_pickle(arrays, legacy):
    """A state dict as torch pickles it: OrderedDict(), its items set, each a rebuilt tensor."""
    items = [(name, _tensor(a, str(i))) for i, (name, a) in enumerate(arrays.items())]
    buf = io.BytesIO()
    _TorchPickler(buf, legacy).dump(_Reduce(_Name('collections', 'OrderedDict'), (), items))
    return buf.getvalue()


def _write_pth(path, arrays, data_pkl=None, skip_storages=(), legacy=False):
    """`arrays` (name -> array) in torch's zip layout (or the legacy one), data.pkl replaced by
    `data_pkl` if given, the storages of `skip_storages` (keys) left out."""
    data_pkl = data_pkl or _data_pickle(arrays, legacy)
    storages = [(str(i), np.ascontiguousarray(a)) for i, a in enumerate(arrays.values())]
    if legacy:
        with open(path, 'wb') as f:
            for value in (torch_checkpoint.LEGACY_MAGIC, torch_checkpoint.LEGACY_PROTOCOL,
                          {'protocol_version': 1001, 'little_endian': True}):
                f.write(pickle.dumps(value, protocol=2))
            f.write(data_pkl)
            f.write(pickle.dumps([k for k, _ in storages], protocol=2))
            for key, a in storages:
                f.write(np.int64(a.size).tobytes() + a.astype(a.dtype.newbyteorder('<')).tobytes())
        return path
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', data_pkl)
        zf.writestr('archive/byteorder', 'little')
        for key, a in storages:
            if key not in skip_storages:
                zf.writestr('archive/data/' + key, a.astype(a.dtype.newbyteorder('<')).tobytes())
    return path


# -- the graph ------------------------------------------------------------------------------------
def _images():
    pixels = np.load(LOGITS)['pixels']
    return (pixels.astype(np.float32) / 127.5 - 1).transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _sres50_logits(deps, weight_sets, images, num_classes=10):
    """Inference-mode logits of sres50 at `deps` for each weight set (name -> array)."""
    with tf.Graph().as_default() as graph:
        inputs = tf.placeholder(tf.float32, images.shape)
        builder = ConvNetBuilder(inputs, phase_train=False)
        logits = get_model('sres50').build(builder, deps, num_classes).tensor
        variables = key_variables(builder.trace)
        with tf.Session(graph=graph) as session:
            out = []
            for weights in weight_sets:
                load_weights(session, variables, weights, 'imported', allow_unexpected=False)
                out.append(session.run(logits, {inputs: images}))
            return out


def _relative(ours, torch_logits):
    return float(np.abs(ours - torch_logits).max() / np.abs(torch_logits).max())


def test_imported_fixture_computes_torchs_logits(tmp_path):
    """The zip fixture imported is an ordinary weight file (267 variables, deps read from the
    shapes, 10 classes) whose logits in our graph are torch's within 1e-4 relative; the same
    weights with each 3x3 kernel's H and W swapped (the shapes still fit) are far off, so the
    comparison sees layout mistakes. The legacy fixture imports to the very same arrays."""
    out = str(tmp_path / 'imported.hdf5')
    assert import_torch_file(ZIP, out, log=lambda line: None) == (FIXTURE_DEPS, 10)
    imported = hdf5_io.read_hdf5(out)
    assert imported.deps == FIXTURE_DEPS and len(imported.weights) == 267
    assert imported.weights['v0/cg/conv0/conv2d/kernel'].shape == (7, 7, 3, 4)
    assert imported.weights['v0/cg/affine0/dense/kernel'].shape == (128, 10)

    arrays = _fixture_arrays()
    np.testing.assert_array_equal(imported.weights['v0/cg/conv13/conv2d/kernel'],
                                  arrays['layer2.0.conv2.weight'].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(imported.weights['v0/cg/conv11/batchnorm11/moving_variance'],
                                  arrays['layer2.0.downsample.1.running_var'])

    legacy_out = str(tmp_path / 'legacy.hdf5')
    import_torch_file(LEGACY, legacy_out, log=lambda line: None)
    legacy = hdf5_io.read_hdf5(legacy_out)
    assert legacy.deps == FIXTURE_DEPS and legacy.weights.keys() == imported.weights.keys()
    for name, value in imported.weights.items():
        np.testing.assert_array_equal(legacy.weights[name], value, err_msg=name)

    swapped = {n: (v.transpose(1, 0, 2, 3) if v.ndim == 4 and v.shape[0] == 3 else v)
               for n, v in imported.weights.items()}
    torch_logits = np.load(LOGITS)['logits']
    ours, wrong = _sres50_logits(FIXTURE_DEPS, [imported.weights, swapped], _images())
    assert ours.shape == torch_logits.shape == (2, 10)
    assert _relative(ours, torch_logits) < 1e-4, _relative(ours, torch_logits)
    assert _relative(wrong, torch_logits) > 1e-2
    print('max relative logit difference against torch: %.2e' % _relative(ours, torch_logits))


def _import_error(tmp_path, source):
    out = tmp_path / 'out.hdf5'
    with pytest.raises(UserError) as info:
        import_torch_file(str(source), str(out), log=lambda line: None)
    message = str(info.value)
    assert '\n' not in message and str(source) in message
    assert not out.exists() and os.listdir(tmp_path) == [os.path.basename(source)]
    return message


class _Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, ('touch %s' % shlex.quote(self.marker),)


class _Eval:
    """Unpickling this runs Python code (through builtins.eval) that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return eval, ('open(%r, "w").close()' % self.marker,)


# Protocol 2 names builtins as Python 2 did.
@pytest.mark.parametrize('payload,name', [(_Payload, SYSTEM), (_Eval, '__builtin__.eval')])
@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_code_in_data_pkl_is_refused_and_nothing_runs(tmp_path, payload, name, legacy):
    marker = tmp_path.parent / ('%s-%s-ran' % (tmp_path.name, name))
    crafted = pickle.dumps({'conv1.weight': payload(marker)}, protocol=2)
    pickle.loads(crafted)  # the payload is real: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    source = _write_pth(str(tmp_path / 'crafted.pth'), {'conv1.weight': np.zeros(3, np.float32)},
                        data_pkl=crafted, legacy=legacy)
    message = _import_error(tmp_path, source)
    assert 'refused to load %s' % name in message and not marker.exists()


def test_a_global_beside_the_allowed_few_is_refused(tmp_path):
    """A real state dict pickle whose OrderedDict is swapped for another (harmless) global."""
    arrays = _fixture_arrays()
    data = _data_pickle(arrays, legacy=False).replace(b'collections\nOrderedDict\n',
                                                      b'collections\ndefaultdict\n', 1)
    message = _import_error(tmp_path, _write_pth(str(tmp_path / 'x.pth'), arrays, data_pkl=data))
    assert 'refused to load collections.defaultdict' in message


def test_the_crafted_writer_is_faithful(tmp_path):
    """Our writer's files of the fixture's tensors import exactly like torch's file."""
    arrays = _fixture_arrays()
    for legacy in (False, True):
        path = _write_pth(str(tmp_path / ('w%d.pth' % legacy)), arrays, legacy=legacy)
        read = torch_checkpoint.open_checkpoint(path).read(None)
        assert list(read) == list(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(read[name], value)
            assert read[name].dtype == value.dtype


def test_missing_storage_entry_is_named(tmp_path):
    arrays = _fixture_arrays()
    key = str(list(arrays).index('layer3.2.conv2.weight'))
    message = _import_error(tmp_path, _write_pth(str(tmp_path / 'x.pth'), arrays,
                                                 skip_storages=(key,)))
    assert 'the storage of tensor layer3.2.conv2.weight (archive/data/%s) is missing' % key \
        in message


def test_missing_extra_and_mis_shaped_tensors_are_named_in_one_error(tmp_path):
    arrays = _fixture_arrays()
    del arrays['layer2.1.bn2.running_var'], arrays['fc.bias']
    arrays['layer5.0.conv1.weight'] = np.zeros((4, 4, 1, 1), np.float32)
    arrays['layer1.0.conv2.weight'] = np.zeros((4, 4, 1, 1), np.float32)  # a 1x1 for the 3x3
    arrays['layer3.1.conv3.weight'] = np.zeros((32, 16, 1, 1), np.float32)  # tied to 64 filters
    arrays['layer3.1.bn3.weight'] = np.zeros(32, np.float32)
    arrays['conv1.weight'] = arrays['conv1.weight'].astype(np.int64)
    message = _import_error(tmp_path, _write_pth(str(tmp_path / 'x.pth'), arrays))
    assert 'tensors 2 missing (layer2.1.bn2.running_var, fc.bias)' in message
    assert '1 extra (layer5.0.conv1.weight)' in message
    for wrong in ('layer1.0.conv2.weight [4, 4, 1, 1], expected [4, 4, 3, 3]',
                  'layer3.1.conv3.weight [32, 16, 1, 1], expected [64, 16, 1, 1]',
                  'layer3.1.bn3.weight [32], expected [64]',
                  'conv1.weight of i8, expected floating point'):
        assert wrong in message
    assert '4 with the wrong shape or type' in message


def test_reduced_widths_are_read_from_the_shapes(tmp_path):
    """A pruned torchvision-layout file (block 1 of stage 2 at 3 and 5 internal channels)."""
    arrays = _fixture_arrays()
    for name, keep in (('layer2.1.conv1', 3), ('layer2.1.conv2', 5)):
        arrays[name + '.weight'] = arrays[name + '.weight'][:keep]
        for tensor in ('weight', 'bias', 'running_mean', 'running_var'):
            bn = name.replace('conv', 'bn') + '.' + tensor
            arrays[bn] = arrays[bn][:keep]
    arrays['layer2.1.conv2.weight'] = np.ascontiguousarray(arrays['layer2.1.conv2.weight'][:, :3])
    arrays['layer2.1.conv3.weight'] = np.ascontiguousarray(arrays['layer2.1.conv3.weight'][:, :5])
    deps, classes = import_torch_file(_write_pth(str(tmp_path / 'x.pth'), arrays),
                                      str(tmp_path / 'x.hdf5'), log=lambda line: None)
    expected = list(FIXTURE_DEPS)
    expected[15:17] = [3, 5]
    assert deps == tuple(expected) and classes == 10
    assert hdf5_io.read_hdf5(str(tmp_path / 'x.hdf5')).deps == tuple(expected)


@pytest.mark.parametrize('source', [ZIP, LEGACY], ids=['zip', 'legacy'])
def test_truncated_file_is_a_user_error(tmp_path, source):
    data = open(source, 'rb').read()
    for cut in (len(data) // 2, len(data) - 100, 40):
        path = tmp_path / 'cut.pth'
        path.write_bytes(data[:cut])
        message = _import_error(tmp_path, path)
        assert 'is not a PyTorch state dict this reader can use' in message


def _damaged_files(path, legacy, count):
    """`count` times: the fixture with 3 bytes of its pickles changed at random, written to `path`
    (the zip's data.pkl rewritten into a zip with valid checksums, so the unpickler sees it)."""
    rng = np.random.default_rng(0)
    if legacy:
        data = open(LEGACY, 'rb').read()
        span = 49609  # the five pickles: magic, protocol, system info, data, storage keys
    else:
        with zipfile.ZipFile(ZIP) as zf:
            data = zf.read('torch_resnet50_w16/data.pkl')
        span, arrays = len(data), _fixture_arrays()
    for _ in range(count):
        damaged = bytearray(data)
        for position in rng.integers(0, span, 3):
            damaged[position] = int(rng.integers(0, 256))
        if legacy:
            path.write_bytes(bytes(damaged))
        else:
            _write_pth(str(path), arrays, data_pkl=bytes(damaged))
        yield


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_random_damage_never_escapes_as_a_traceback(tmp_path, legacy):
    """Bytes of the pickles changed at random: each file reads or is a one-line UserError."""
    path = tmp_path / 'damaged.pth'
    outcomes = set()
    for _ in _damaged_files(path, legacy, 200):
        try:
            checkpoint = torch_checkpoint.open_checkpoint(str(path))
            checkpoint.read(resnet50_model.torchvision_names().keys() & checkpoint.tensors.keys())
            outcomes.add('read')
        except UserError as e:
            assert '\n' not in str(e)
            outcomes.add('error')
    assert 'error' in outcomes


def test_a_huge_memo_index_is_refused_before_unpickling(tmp_path):
    """LONG_BINPUT 2**32 - 1 would make the unpickler allocate a memo of 32 GB."""
    crafted = b'\x80\x02}r\xff\xff\xff\xff.'
    message = _import_error(tmp_path, _write_pth(str(tmp_path / 'x.pth'), {}, data_pkl=crafted))
    assert 'a pickle memo index of 4294967295' in message


def test_not_a_torch_file_is_a_user_error(tmp_path):
    path = tmp_path / 'plain.pth'
    path.write_bytes(pickle.dumps({'a': 1}, protocol=2))
    assert 'no magic number' in _import_error(tmp_path, path)
    path.write_bytes(b'hello')
    assert 'neither torch\'s zip layout nor its legacy' in _import_error(tmp_path, path)
    with pytest.raises(UserError, match='does not exist'):
        import_torch_file(str(tmp_path / 'none.pth'), str(tmp_path / 'o.hdf5'))


def test_drivers_import_mode(tmp_path):
    """Both drivers: `import FILE.pth --out FILE.hdf5` writes the weight file; a missing --out, a
    --tflite, a damaged file or a directory as --out end in one `error:` line, exit 2, nothing
    written."""
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(open(ZIP, 'rb').read()[:5000])
    (tmp_path / 'folder').mkdir()
    cases = [(tmp_path, ['import', ZIP, '--out', 'a.hdf5']),
             (tmp_path, ['import', ZIP]),
             (tmp_path, ['import', ZIP, '--out', 'b.hdf5', '--tflite']),
             (tmp_path, ['import', str(damaged), '--out', 'c.hdf5']),
             (tmp_path, ['import', ZIP, '--out', 'folder'])]
    for script in ('aofp/aofp_standalone.py', 'csgd/csgd_standalone.py'):
        outcomes = run_driver_cases(os.path.join(REPO, script), cases)
        assert outcomes[0]['code'] == 0, outcomes[0]['stderr'][-2000:]
        assert 'imported %s (zip format, 267 tensors) into a.hdf5' % ZIP in outcomes[0]['stdout']
        assert hdf5_io.read_hdf5(str(tmp_path / 'a.hdf5')).deps == FIXTURE_DEPS
        for outcome, needle in zip(outcomes[1:], ('import needs --out FILE.hdf5',
                                                  '--tflite is a flag of export, not of import',
                                                  'is not a PyTorch state dict',
                                                  '--out folder is a directory')):
            lines = error_lines(outcome['stderr'])
            assert outcome['code'] == 2 and len(lines) == 1 and needle in lines[0], outcome
            assert 'Traceback' not in outcome['stderr']
        assert sorted(os.listdir(tmp_path)) == ['a.hdf5', 'damaged.pth', 'folder']
        assert not os.listdir(tmp_path / 'folder')
        os.remove(str(tmp_path / 'a.hdf5'))


def test_reader_matches_torch_load(tmp_path):
    """With torch installed (not in CI): torch.load and this reader agree on the fixtures and on a
    state dict of other dtypes, a non-contiguous tensor and tensors sharing one storage."""
    torch = pytest.importorskip('torch', exc_type=ImportError)  # missing or broken
    for source in (ZIP, LEGACY):
        expected = torch.load(source)
        read = torch_checkpoint.open_checkpoint(source).read(None)
        assert list(read) == list(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(read[name], value.numpy())
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    state = {'double': torch.randn(3, 5, dtype=torch.float64), 'half': torch.randn(4).half(),
             'bfloat16': torch.randn(6).bfloat16(), 'long': torch.arange(5),
             'transposed': base.permute(2, 0, 1), 'slice': base[1, 1:, 2:], 'whole': base,
             'bool': torch.tensor([True, False])}
    for legacy in (False, True):
        path = str(tmp_path / ('state%d.pth' % legacy))
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        read = torch_checkpoint.open_checkpoint(path).read(None)
        for name, value in state.items():
            value = value.float() if value.dtype == torch.bfloat16 else value
            np.testing.assert_array_equal(read[name], value.numpy(), err_msg=name)
        assert len({t.storage for t in torch_checkpoint.open_checkpoint(path).tensors.values()}) \
            == 6
