"""PyTorch `.pth` state dicts (names -> tensors, as `torch.save(model.state_dict(), f)` writes them)
read without torch and without running code, in both of torch's layouts:

- the zip (torch >= 1.6): `<archive>/data.pkl`, a pickle whose only globals are
  `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and storage types such as
  `torch.FloatStorage`, with persistent ids `('storage', type, key, location, numel)` naming the raw
  storages `<archive>/data/<key>` (little-endian unless `<archive>/byteorder` says `big`);
- the legacy format (torch < 1.6, torchvision's older downloads): pickles one after another (magic
  number, protocol version, system info, the data pickle, the list of storage keys), then each
  storage as an 8-byte element count and its raw bytes; persistent ids carry a sixth item, the
  view of another storage or None, and torch < 0.4 rebuilt tensors with `_rebuild_tensor`.

The pickles go through safe_pickle's restricted unpickler with stand-ins for those few globals
(they record storages and shapes, nothing else); any other global is refused before it runs.
Every tensor is checked against its storage before a byte of data is read, and any damage ends in
one UserError naming the file.
"""

import dataclasses
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from typing import Tuple

import numpy as np

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.safe_pickle import Opaque, global_name, safe_load

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 64 << 20  # a state dict's pickle is kilobytes; a bigger one is not a state dict
_STORAGE_DTYPES = {'FloatStorage': 'f4', 'DoubleStorage': 'f8', 'HalfStorage': 'f2',
                   'BFloat16Storage': 'bf16', 'LongStorage': 'i8', 'IntStorage': 'i4',
                   'ShortStorage': 'i2', 'CharStorage': 'i1', 'ByteStorage': 'u1',
                   'BoolStorage': 'b1'}
# Storage types as pickles name them: torch.FloatStorage, or torch.cuda.FloatStorage for a
# checkpoint saved on a GPU (its bytes are the same).
STORAGE_TYPES = {'%s.%s' % (module, name): dtype for name, dtype in _STORAGE_DTYPES.items()
                 for module in ('torch', 'torch.cuda')}


class _Damaged(Exception):
    """The file is not a state dict torch wrote, or is damaged: the message says how."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of a state dict: where its elements are, not yet read."""
    storage: str            # the storage's key (`data/<key>` in the zip)
    dtype: str              # a NumPy dtype string, or 'bf16'
    offset: int             # in elements, from the start of the storage
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]


class _Storage(Opaque):
    """What a persistent id becomes: args (key, dtype, numel, offset of a legacy view)."""
    __slots__ = ()


class _TensorStand(Opaque):
    """What _rebuild_tensor(_v2) becomes: args (storage, offset, size, stride)."""
    __slots__ = ()


class _StateDict(dict):
    """collections.OrderedDict as a state dict pickles it; its BUILD state (torch's `_metadata`,
    module versions) is dropped."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise _Damaged('an OrderedDict with state %s' % type(state).__name__)


def _ordered_dict(*args):
    if args:
        raise _Damaged('an OrderedDict made from arguments')
    return _StateDict()


def _ints(value, what):
    if (not isinstance(value, tuple) or
            not all(isinstance(n, int) and not isinstance(n, bool) for n in value)):
        raise _Damaged('a tensor %s that is not a tuple of integers' % what)
    return value


def _rebuild_tensor(storage, offset, size, stride):
    if not isinstance(storage, _Storage):
        raise _Damaged('a tensor without a storage')
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise _Damaged('a tensor offset that is not an integer')
    return _TensorStand(storage, offset, _ints(size, 'size'), _ints(stride, 'stride'))


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None):
    if hooks:  # an OrderedDict of hook functions, which could only come from refused globals
        raise _Damaged('a tensor with backward hooks')
    return _rebuild_tensor(storage, offset, size, stride)


def _storage_type(*args):
    raise _Damaged('a storage type called as a function')


def _extra_globals():
    extra = {('collections', 'OrderedDict'): _ordered_dict,
             ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
             ('torch._utils', '_rebuild_tensor'): _rebuild_tensor}
    for name in STORAGE_TYPES:
        module, _, attr = name.rpartition('.')
        extra[module, attr] = _storage_type
    return extra


class _Storages:
    """persistent_load for one data pickle: checks each id, remembers {key: (dtype, numel)}."""

    def __init__(self, legacy):
        self.legacy, self.declared = legacy, {}

    def __call__(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
            if isinstance(pid, tuple) and pid and pid[0] == 'module':
                raise _Damaged('a whole model (torch.save(model)), not a state dict; save '
                               'model.state_dict() instead')
            raise _Damaged('a persistent id that is not a storage')
        if len(pid) != (6 if self.legacy else 5):
            raise _Damaged('a storage id of %d items (the %s format has %d)'
                           % (len(pid), 'legacy' if self.legacy else 'zip',
                              6 if self.legacy else 5))
        dtype = STORAGE_TYPES.get(global_name(pid[1]))
        key, numel = pid[2], pid[4]
        if dtype is None:
            raise _Damaged('storage type %s' % (global_name(pid[1]) or type(pid[1]).__name__))
        if not isinstance(key, str) or not _count(numel):
            raise _Damaged('a storage id without a key and a size')
        if self.declared.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise _Damaged('storage %s declared twice, differently' % key)
        view = pid[5] if self.legacy else None
        if view is None:
            return _Storage(key, dtype, numel, 0)
        return self._view(key, dtype, numel, view)

    def _view(self, key, dtype, numel, view):
        """A legacy view: (view key, element offset, view size) into storage `key`."""
        if (not isinstance(view, tuple) or len(view) != 3 or not _count(view[1])
                or not _count(view[2]) or view[1] + view[2] > numel):
            raise _Damaged('a storage view outside its storage %s' % key)
        return _Storage(key, dtype, view[2], view[1])


def _count(n):
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


_MEMO_PUTS = ('PUT', 'BINPUT', 'LONG_BINPUT')


def _scan_pickle(fileobj):
    """Walk one pickle's opcodes without making objects: every string's bytes must be there, and
    no memo index may exceed the opcodes before it (the unpickler would allocate a memo of that
    size: gigabytes for a crafted 4-byte index)."""
    for count, (opcode, arg, _) in enumerate(pickletools.genops(fileobj), start=1):
        if opcode.name in _MEMO_PUTS and (not isinstance(arg, int) or arg > count):
            raise _Damaged('a pickle memo index of %r' % (arg,))


def _load_pickle(fileobj, persistent_load=None):
    """The next pickle of `fileobj` (an in-memory file), scanned first, then unpickled with the
    torch stand-ins."""
    start = fileobj.tell()
    _scan_pickle(fileobj)
    fileobj.seek(start)
    return safe_load(fileobj, extra_globals=_extra_globals(), persistent_load=persistent_load)


def _tensors(obj):
    """The state dict's {name: Tensor}, each inside its storage's declared size."""
    if not isinstance(obj, dict):
        raise _Damaged('a %s, not a state dict (names -> tensors); save model.state_dict()'
                       % type(obj).__name__)
    tensors = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorStand):
            raise _Damaged('entry %r is a %s, not a tensor; a state dict holds tensors only'
                           % (name, type(value).__name__))
        tensors[name] = _tensor(name, *value.args)
    return tensors


def _tensor(name, storage, offset, size, stride):
    key, dtype, numel, view_offset = storage.args
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise _Damaged('tensor %s has size %s, stride %s, offset %d' % (name, size, stride, offset))
    count = math.prod(size)
    if count and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= numel:
        raise _Damaged('tensor %s reaches past the end of its storage %s (%d elements)'
                       % (name, key, numel))
    if count > numel:  # repeats elements (a stride of 0): a state dict's tensors do not
        raise _Damaged('tensor %s has %d elements in a storage of %d' % (name, count, numel))
    return Tensor(key, dtype, view_offset + offset, tuple(size), tuple(stride))


def _itemsize(dtype):
    return 2 if dtype == 'bf16' else np.dtype(dtype).itemsize


def _array(tensor, raw, byteorder):
    """The tensor's elements from its storage's bytes, as a new array in native byte order."""
    if tensor.dtype == 'bf16':  # NumPy has no bfloat16: the upper half of a float32
        base = (np.frombuffer(raw, byteorder + 'u2').astype(np.uint32) << 16).view(np.float32)
    else:
        base = np.frombuffer(raw, np.dtype(tensor.dtype).newbyteorder(byteorder))
    view = np.lib.stride_tricks.as_strided(
        base[tensor.offset:], tensor.shape, [s * base.itemsize for s in tensor.stride],
        writeable=False)
    return np.array(view, dtype=base.dtype.newbyteorder('='))


class Checkpoint:
    """A state dict's tensors (`tensors`: name -> Tensor, shapes known, nothing read yet) and
    `read(names)`: those tensors as arrays. Made by `open_checkpoint`."""

    def __init__(self, path, tensors, byteorder, storage_bytes, legacy):
        self.path, self.tensors, self.byteorder = path, tensors, byteorder
        self._storage_bytes, self.legacy = storage_bytes, legacy

    def read(self, names):
        """{name: np.ndarray} of `names` (all if None), each copied out of its storage."""
        names = list(self.tensors) if names is None else list(names)
        try:
            raws = self._storage_bytes({self.tensors[n].storage for n in names})
            return {n: _array(self.tensors[n], raws[self.tensors[n].storage], self.byteorder)
                    for n in names}
        except _LOW_LEVEL_ERRORS as e:
            raise _damaged_error(self.path, e) from None
        except OSError as e:
            raise UserError('cannot read %s (%s)' % (self.path, e.strerror or e)) from None


def _check_storages(tensors, declared, sizes, where):
    """Every storage a tensor uses is present (`sizes`: key -> bytes) with its declared size."""
    for name, tensor in tensors.items():
        dtype, numel = declared[tensor.storage]
        if tensor.storage not in sizes:
            raise _Damaged('the storage of tensor %s (%s) is missing'
                           % (name, where(tensor.storage)))
        if sizes[tensor.storage] != numel * _itemsize(dtype):
            raise _Damaged('the storage of tensor %s (%s) holds %d bytes, its id says %d'
                           % (name, where(tensor.storage), sizes[tensor.storage],
                              numel * _itemsize(dtype)))


# -- the zip layout ----------------------------------------------------------------------------------
def _archive_prefix(zf):
    pickles = [n for n in zf.namelist() if n.count('/') == 1 and n.endswith('/data.pkl')]
    if len(pickles) != 1:
        raise _Damaged('a zip with %s data.pkl; torch.save writes one, as <name>/data.pkl'
                       % ('no' if not pickles else len(pickles)))
    return pickles[0][:-len('data.pkl')]


def _read_member(zf, name, limit):
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise _Damaged('%s of %d bytes, more than a state dict has' % (name, info.file_size))
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) != info.file_size:
        raise _Damaged('%s is shorter than the zip says' % name)
    return data


def _byteorder(zf, prefix):
    if prefix + 'byteorder' not in zf.namelist():
        return '<'
    mark = _read_member(zf, prefix + 'byteorder', 16)
    if mark not in (b'little', b'big'):
        raise _Damaged('byte order %r' % mark[:16])
    return '<' if mark == b'little' else '>'


def _open_zip(path):
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf)
        storages = _Storages(legacy=False)
        data = _read_member(zf, prefix + 'data.pkl', MAX_PICKLE_BYTES)
        tensors = _tensors(_load_pickle(io.BytesIO(data), storages))
        sizes = {n[len(prefix) + 5:]: zf.getinfo(n).file_size for n in zf.namelist()
                 if n.startswith(prefix + 'data/')}
        _check_storages(tensors, storages.declared, sizes, lambda k: prefix + 'data/' + k)
        byteorder = _byteorder(zf, prefix)

    def storage_bytes(keys):
        with zipfile.ZipFile(path) as zf:
            return {k: _read_member(zf, prefix + 'data/' + k, sizes[k]) for k in keys}
    return Checkpoint(path, tensors, byteorder, storage_bytes, legacy=False)


# -- the legacy format ----------------------------------------------------------------------------
def _legacy_header(f):
    if _load_pickle(f) != LEGACY_MAGIC:
        raise _Damaged('a pickle that is not a torch checkpoint (no magic number)')
    protocol = _load_pickle(f)
    if protocol != LEGACY_PROTOCOL:
        raise _Damaged('legacy protocol version %r (this reader knows %d)'
                       % (protocol, LEGACY_PROTOCOL))
    info = _load_pickle(f)
    if not isinstance(info, dict):
        raise _Damaged('legacy system information that is not a dict')
    return '<' if info.get('little_endian', True) else '>'


def _legacy_storages(f, keys, declared, byteorder, file_size):
    """{key: (data offset, bytes)} of the storages after the pickles (`f` at their start): each an
    8-byte element count (which must match the id's), then the elements."""
    if not isinstance(keys, list) or set(keys) != set(declared) or len(keys) != len(declared):
        raise _Damaged('a storage key list that does not match the storages the tensors use')
    places, position = {}, f.tell()
    for key in keys:
        dtype, numel = declared[key]
        f.seek(position)
        head = f.read(8)
        if len(head) != 8:
            raise _Damaged('storage %s is missing (the file ends before it)' % key)
        (count,) = struct.unpack(byteorder + 'q', head)
        if count != numel:
            raise _Damaged('storage %s has %d elements, its id says %d' % (key, count, numel))
        places[key] = (position + 8, numel * _itemsize(dtype))
        position += 8 + numel * _itemsize(dtype)
        if position > file_size:
            raise _Damaged('storage %s is cut short (the file ends inside it)' % key)
    return places


def _open_legacy(path):
    with open(path, 'rb') as f:
        file_size = os.fstat(f.fileno()).st_size
        head = io.BytesIO(f.read(MAX_PICKLE_BYTES))  # the pickles; the storages follow them
        byteorder = _legacy_header(head)
        storages = _Storages(legacy=True)
        tensors = _tensors(_load_pickle(head, storages))
        keys = _load_pickle(head)
        f.seek(head.tell())
        places = _legacy_storages(f, keys, storages.declared, byteorder, file_size)
    _check_storages(tensors, storages.declared, {k: n for k, (_, n) in places.items()}, str)

    def storage_bytes(keys):
        out = {}
        with open(path, 'rb') as f:
            for key in keys:
                f.seek(places[key][0])
                out[key] = f.read(places[key][1])
                if len(out[key]) != places[key][1]:
                    raise _Damaged('storage %s is cut short' % key)
        return out
    return Checkpoint(path, tensors, byteorder, storage_bytes, legacy=True)


# -- opening ---------------------------------------------------------------------------------------
_LOW_LEVEL_ERRORS = (_Damaged, pickle.UnpicklingError, EOFError, zipfile.BadZipFile,
                     zipfile.LargeZipFile, zlib.error, NotImplementedError, struct.error,
                     OverflowError, MemoryError, ValueError, KeyError, RuntimeError)


def _damaged_error(path, error):
    reason = str(error) if isinstance(error, (_Damaged, pickle.UnpicklingError)) else \
        '%s: %s' % (type(error).__name__, error)
    reason = reason if reason.isprintable() else ascii(reason)
    return UserError('%s is not a PyTorch state dict this reader can use: %s. Pass a file written by '
                     'torch.save(model.state_dict(), f) (nothing of it was run)'
                     % (path, reason[:500]))


def _kind(path):
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(b'PK\x03\x04'):
        return 'zip'
    if head.startswith(b'\x80'):  # a pickle: the legacy format's first is its magic number
        return 'legacy'
    if head[257:262] == b'ustar':
        raise _Damaged('a tar archive: the format of torch before 0.4, which this reader does not '
                       'read; load it with an old torch and save it again with torch.save')
    raise _Damaged('neither torch\'s zip layout nor its legacy (pre-1.6) format')


def open_checkpoint(path):
    """The Checkpoint of a `.pth` file (either layout), every tensor checked against its storage;
    a missing, refused, damaged or truncated file is a UserError saying so."""
    if not os.path.isfile(path):
        raise UserError('%s %s; pass the .pth file to import'
                        % (path, 'is a directory' if os.path.isdir(path) else 'does not exist'))
    try:
        kind = _kind(path)
        return _open_zip(path) if kind == 'zip' else _open_legacy(path)
    except _LOW_LEVEL_ERRORS as e:
        raise _damaged_error(path, e) from None
    except OSError as e:
        raise UserError('cannot read %s (%s)' % (path, e.strerror or e)) from None
