"""User-facing errors: one clear message and a non-zero exit instead of a traceback."""

import errno
import pickle
import re
import struct
import sys
import tokenize
import zlib

# Write failures a user fixes by choosing another directory or freeing space.
_WRITE_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EDQUOT,
                 errno.ENOTDIR)


# What parsing hostile bytes can raise (a huge length, deep nesting, a bad number or encoding, a
# truncated file, ...): readers of user files turn these into their corrupt-file UserError.
MALFORMED_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError,
                          EOFError, OverflowError, MemoryError, RuntimeError, SyntaxError,
                          struct.error, zlib.error, pickle.UnpicklingError, tokenize.TokenError)


class UserError(Exception):
    """Something the user can fix (missing data, wrong file, bad flag, NaN loss, ...).

    The message says what is wrong and how to fix it; `exit_on_user_error` prints it and exits 2.
    """


def exit_on_user_error(main):
    """Wrap an absl `main(argv)`: a UserError, or a file that cannot be written (read-only or full
    disk), ends the program with one message on stderr and exit status 2; Ctrl-C ends it with exit
    status 130 (work is checkpointed before, see Trainer)."""
    def wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            _fail(str(e))
        except OSError as e:
            if e.errno not in _WRITE_ERRORS:
                raise
            _fail(cannot_write_message(e.filename or '', e.strerror))
        except KeyboardInterrupt:
            sys.stderr.write('interrupted; run the same command again to continue\n')
            sys.exit(130)
    return wrapped


def cannot_write_message(path, reason):
    return ('cannot write %s (%s); run in a writable directory with free space. Files already '
            'finished are kept, and the same command continues from them' % (path, reason))


def _fail(message):
    sys.stderr.write('error: %s\n' % message)
    sys.stderr.flush()
    sys.exit(2)


def corrupt_record_error(path, error, what='record'):
    """The UserError for a tfrecord that TensorFlow could not read (a DataLossError)."""
    return UserError('corrupt %s in %s (%s); re-create the data with '
                     'datasets/download_and_convert_cifar10.py --overwrite'
                     % (what, path, error.message.splitlines()[0]))


def write_failure_reason(message):
    """The system's reason ('File too large', 'No space left on device', ...) in a TF save error."""
    for line in message.splitlines():
        match = re.search(r'; ([A-Z][A-Za-z -]+)$', line.strip())
        if match:
            return match.group(1)
    return message.splitlines()[0]
