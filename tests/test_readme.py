"""The README's test command is exactly what CI runs."""

import os

from conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(REPO, 'README.md')).read()
    ci = open(os.path.join(REPO, '.ci', 'run')).read()
    command = [line for line in ci.splitlines() if 'pytest' in line]
    assert len(command) == 1
    assert command[0] in readme
