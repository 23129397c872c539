"""Read pickles from anyone (CIFAR-10 batches, the original's clusters files) without running their
code: only containers, strings, numbers and plain NumPy arrays come out. Globals are limited to the
few NumPy pickles name, and even those never reach NumPy's own unpickling (`ndarray(buffer=...)` or
`__setstate__` with a crafted dtype can forge object pointers): stand-ins record their arguments,
then become arrays built from checked simple dtypes, bytes and lists.
"""

import math
import pickle
import re

import numpy as np

from tf_benchmarks.core.errors import MALFORMED_INPUT_ERRORS


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asks for a class or function outside the allowed list; nothing of it was run."""

    def __init__(self, name):
        super().__init__('refused to load %s (not a plain array, string, number or container)'
                         % name)
        self.name = name


def _malformed(what):
    return pickle.UnpicklingError('malformed pickle: %s' % what)


class _Stand(object):
    """Base of the stand-ins; BUILD (__setstate__) is refused unless a subclass accepts a state."""
    __slots__ = ('args', 'state')

    def __init__(self, *args):
        self.args, self.state = args, None

    def __setstate__(self, state):
        raise _malformed('state given to %s' % type(self).__name__)


class _Global(_Stand):
    """What find_class returns: calling it calls args[1]; it cannot be changed by BUILD."""
    __slots__ = ()

    def __call__(self, *args):
        return self.args[1](*args)


class _Dtype(_Stand):
    """numpy.dtype(spec, align, copy) plus its state (byte order, ...)."""
    __slots__ = ()

    def __setstate__(self, state):
        self.state = state


class _Array(_Stand):
    """`_reconstruct(ndarray, ...)`, then state (version, shape, dtype, fortran, data)."""
    __slots__ = ()

    def __setstate__(self, state):
        self.state = state


class _Scalar(_Stand):
    """numpy.core.multiarray.scalar(dtype, data)."""
    __slots__ = ()


class Opaque(_Stand):
    """Base of the stand-ins a caller's `extra_globals` or `persistent_load` make (e.g. a tensor's
    storage and shape): safe_load hands them back as they are, for the caller to check; BUILD on
    them is refused."""
    __slots__ = ()


def global_name(value):
    """'module.name' if `value` is a global the unpickler handed out (as a class named inside a
    persistent id is), else None."""
    return value.args[0] if isinstance(value, _Global) else None


def _ndarray(*args):
    raise _malformed('numpy.ndarray called directly')


def _reconstruct(subtype, shape, typecode):
    if subtype is not ALLOWED['numpy', 'ndarray']:
        raise _malformed('_reconstruct of something other than numpy.ndarray')
    return _Array()


def _frombuffer(buf, dtype, shape, order):
    array = _Array()
    array.state = (shape, dtype, order == 'F', buf)
    return array


def _latin1_encode(text, encoding='latin1'):
    """`_codecs.encode` as pickles of bytes use it (protocol 2), limited to that one use."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise RefusedGlobal('_codecs.encode(%s, %r)' % (type(text).__name__, encoding))
    return text.encode('latin1')


def _empty_bytes(*args):
    """`bytes` as protocol-2 pickles use it for b'' (called without arguments)."""
    if args:
        raise RefusedGlobal('bytes(...) with arguments')
    return b''


def _allowed():
    """(module, name) -> what find_class returns. dict, list, tuple, set, str, bytes, int, float,
    bool and None need no global. NumPy 2 renamed numpy.core to numpy._core; pickles name either."""
    functions = {('numpy', 'ndarray'): _ndarray, ('numpy', 'dtype'): _Dtype,
                 ('_codecs', 'encode'): _latin1_encode,
                 ('builtins', 'bytes'): _empty_bytes, ('__builtin__', 'bytes'): _empty_bytes}
    for core in ('numpy.core', 'numpy._core'):
        functions[core + '.multiarray', '_reconstruct'] = _reconstruct
        functions[core + '.multiarray', 'scalar'] = _Scalar
        functions[core + '.numeric', '_frombuffer'] = _frombuffer
    return {key: _Global('.'.join(key), function) for key, function in functions.items()}


ALLOWED = _allowed()

# Booleans, integers, floats, complex, objects, byte and unicode strings, raw bytes; no structured,
# datetime or subarray dtypes.
_SIMPLE_DTYPE = re.compile(r'^(b1|[iu][1248]|f(2|4|8|16)|c(8|16|32)|O[48]|[SUV]\d+)$')


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler whose only globals are those in ALLOWED and the caller's `extra_globals`
    ((module, name) -> function, called with the pickle's arguments; it returns plain data or
    Opaque stand-ins); any other raises RefusedGlobal. `persistent_load(pid)`, if given, resolves
    persistent ids (else they are refused, as by pickle)."""

    def __init__(self, file, *, extra_globals=None, persistent_load=None, **kwargs):
        super().__init__(file, **kwargs)
        self.extra = {key: _Global('.'.join(key), function)
                      for key, function in (extra_globals or {}).items()}
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module, name):
        try:
            return self.extra[module, name] if (module, name) in self.extra else \
                ALLOWED[module, name]
        except KeyError:
            name = '%s.%s' % (module, name)  # shown to the user: one printable line
            raise RefusedGlobal(name if name.isprintable() and len(name) < 200
                                else ascii(name[:200])) from None


def _text(value):
    return value.decode('ascii', 'replace') if isinstance(value, bytes) else value


def _dtype(stand):
    if not isinstance(stand, _Dtype) or not stand.args:
        raise _malformed('array without a dtype')
    spec = _text(stand.args[0])
    if not isinstance(spec, str) or not _SIMPLE_DTYPE.match(spec):
        raise _malformed('dtype %r is not a plain number, string or object type' % (spec,))
    dtype = np.dtype(spec)
    state = stand.state or (3, '|', None, None, None, -1, -1, 0)
    if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
            or any(x is not None for x in state[2:5] + state[8:])):
        raise _malformed('dtype %s with structure, fields or metadata' % spec)
    order = _text(state[1])
    if order not in ('<', '>', '|', '='):
        raise _malformed('byte order %r' % (order,))
    if order in '<>' and dtype.kind != 'O':
        dtype = dtype.newbyteorder(order)
    if state[5] not in (-1, dtype.itemsize):
        raise _malformed('dtype %s of %r bytes' % (spec, state[5],))
    return dtype


def _raw(data, nbytes):
    if isinstance(data, str):  # Python 2 pickles read with encoding='latin1'
        data = data.encode('latin1')
    if not isinstance(data, (bytes, bytearray)) or len(data) != nbytes:
        raise _malformed('array data of %s bytes, expected %d'
                         % (len(data) if isinstance(data, (bytes, bytearray)) else 'no', nbytes))
    return data


def _array(stand, resolve):
    state = stand.state
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]  # (version, shape, dtype, fortran, data)
    if not isinstance(state, tuple) or len(state) != 4:
        raise _malformed('array state')
    shape, dtype, fortran, data = state
    if (not isinstance(shape, tuple) or
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise _malformed('array shape %r' % (shape,))
    dtype, size, order = _dtype(dtype), math.prod(shape), 'F' if fortran else 'C'
    if dtype.kind == 'O':
        if not isinstance(data, list) or len(data) != size:
            raise _malformed('object array without a list of its %d items' % size)
        flat = np.empty(size, dtype=object)
        for i, item in enumerate(data):  # listed in C order whatever the memory layout
            flat[i] = resolve(item)
        return flat.reshape(shape)
    flat = np.frombuffer(_raw(data, size * dtype.itemsize), dtype)
    return flat.reshape(shape, order=order).copy()


def _scalar(stand, resolve):
    if len(stand.args) != 2:
        raise _malformed('scalar arguments')
    dtype = _dtype(stand.args[0])
    if dtype.kind == 'O':
        return resolve(stand.args[1])
    return np.frombuffer(_raw(stand.args[1], dtype.itemsize), dtype)[0]


def _resolve(obj, memo):
    """Replace the stand-ins in obj (lists and dicts in place: they may be shared or cyclic)."""
    if isinstance(obj, (str, bytes, bytearray, int, float, type(None), Opaque)):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]

    def resolve(x):
        return _resolve(x, memo)

    if isinstance(obj, list):
        memo[id(obj)] = obj
        obj[:] = [resolve(x) for x in obj]
        return obj
    if isinstance(obj, dict):
        memo[id(obj)] = obj
        items = list(obj.items())
        obj.clear()
        obj.update((resolve(k), resolve(v)) for k, v in items)
        return obj
    if isinstance(obj, (tuple, set, frozenset)):
        result = type(obj)(resolve(x) for x in obj)
    elif isinstance(obj, _Array):
        result = _array(obj, resolve)
    elif isinstance(obj, _Scalar):
        result = _scalar(obj, resolve)
    else:  # a dtype or ndarray on its own, or anything else
        raise _malformed('a bare %s' % type(obj).__name__)
    memo[id(obj)] = result
    return result


def safe_load(fileobj, encoding='ASCII', extra_globals=None, persistent_load=None):
    """pickle.load of plain data only (see the module docstring). Anything else raises an
    UnpicklingError: RefusedGlobal for a forbidden class or function, `malformed pickle: ...` for
    hostile or broken bytes (truncated, huge lengths, deep nesting, bad numbers or text, ...).
    Use encoding='bytes' for Python 2 pickles like CIFAR-10's batches, as with pickle.load.
    `extra_globals` and `persistent_load` as SafeUnpickler's (torch_checkpoint's tensors)."""
    try:
        return _resolve(SafeUnpickler(fileobj, encoding=encoding, extra_globals=extra_globals,
                                      persistent_load=persistent_load).load(), {})
    except pickle.UnpicklingError:
        raise  # RefusedGlobal, or already says what is wrong
    except MALFORMED_INPUT_ERRORS as e:
        raise _malformed('%s: %s' % (type(e).__name__, _first_line(e))) from None


def _first_line(error):
    text = str(error).splitlines()[0] if str(error) else ''
    return text if len(text) <= 200 else text[:197] + '...'
