"""User-facing errors: one clear message and a non-zero exit instead of a traceback."""

import sys


class UserError(Exception):
    """Something the user can fix (missing data, wrong file, bad flag, NaN loss, ...).

    The message says what is wrong and how to fix it; `exit_on_user_error` prints it and exits 2.
    """


def exit_on_user_error(main):
    """Wrap an absl `main(argv)`: a UserError ends the program with its message on stderr and exit
    status 2; Ctrl-C ends it with exit status 130 (work is checkpointed before, see Trainer)."""
    def wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            sys.stderr.write('error: %s\n' % e)
            sys.stderr.flush()
            sys.exit(2)
        except KeyboardInterrupt:
            sys.stderr.write('interrupted; run the same command again to continue\n')
            sys.exit(130)
    return wrapped
