"""Writing a file or directory whole or not at all (a temporary name beside it, then one rename),
JSON written that way, and the sha256 digest of a file."""

import contextlib
import hashlib
import json
import os
import shutil


def temporary_name(path, hidden=False, keep_extension=False):
    """The temporary sibling of `path` this process writes before renaming: `path.tmp-<pid>`, or
    `.name.tmp-<pid>` (hidden), or `name.tmp-<pid>.ext` (keep_extension, for writers that pick the
    format from the extension)."""
    directory, name = os.path.split(path)
    if keep_extension:
        stem, ext = os.path.splitext(name)
        return os.path.join(directory, '%s.tmp-%d%s' % (stem, os.getpid(), ext))
    return os.path.join(directory, '%s%s.tmp-%d' % ('.' if hidden else '', name, os.getpid()))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def replacing(path, **naming):
    """Yield a temporary name to write `path`'s new content to (a file or a directory); when the
    body ends without an exception it is renamed to `path`. The temporary file is removed whatever
    happens, and an OSError names `path`, not the temporary name."""
    tmp = temporary_name(path, **naming)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.filename in (None, tmp):
            e.filename = path
        raise
    finally:
        _remove(tmp)


def write_bytes(path, data):
    with replacing(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)


def write_text(path, text):
    with replacing(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)


def write_json(path, data):
    """`data` as indented JSON (one space), with a final newline."""
    write_text(path, json.dumps(data, indent=1) + '\n')


def write_all(files):
    """Write every (path, bytes) to a temporary name, then rename them all: each output is whole
    or absent, and a failure leaves none of the new ones."""
    temps = []
    try:
        for path, data in files:
            tmp = temporary_name(path)
            temps.append(tmp)
            with open(tmp, 'wb') as f:
                f.write(data)
        for (path, _), tmp in zip(files, temps):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            _remove(tmp)


def file_digest(path):
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
