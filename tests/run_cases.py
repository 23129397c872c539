"""Test helper: runs one driver's `main` on many command lines in one process (one TensorFlow
import instead of one per case) and prints, per case, a JSON line with the exit status and what
the driver wrote to stdout and stderr. Usage: python run_cases.py DRIVER.py '[[cwd, [args...]], ...]'."""

import contextlib
import io
import json
import os
import runpy
import sys

from tf_benchmarks.core.errors import exit_on_user_error


def run_case(driver, cwd, args):
    """Run the driver's main (from runpy.run_path) on `args` in `cwd`; print its CASE line."""
    os.chdir(cwd)
    flags = driver['FLAGS']
    flags.unparse_flags()
    argv = flags([driver['__file__']] + args)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exit_on_user_error(driver['main'])(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    print('CASE ' + json.dumps({'code': code, 'stdout': out.getvalue(),
                                'stderr': err.getvalue()}), flush=True)


def main():
    script, cases = sys.argv[1], json.loads(sys.argv[2])
    driver = runpy.run_path(script)  # defines the flags and main(); not run as __main__
    for cwd, args in cases:
        run_case(driver, cwd, args)


if __name__ == '__main__':
    main()
