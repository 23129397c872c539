"""The shared driver of both methods' command lines: a method describes itself as a `Driver` (its
script name, presets, settings from flags and a table of modes); `main` checks the command line,
dispatches `export`, `export-keras`, `summary`, `verify`, `report`, `import` and `import-keras` to
deploy_commands, and runs the method's mode with the preset's settings and the model. Every mode
that writes the working directory (all but `export`, `export-keras`, `summary`, `verify`, `import`
and `import-keras`) runs holding its lock (runs/lock.py; the chief's alone under
several workers). This module imports no method: the drivers pass themselves in."""

import contextlib
import dataclasses
from typing import Callable, Dict, Optional, Tuple

from absl import app, flags

from tf_benchmarks.commands import deploy_commands
from tf_benchmarks.commands.driver_flags import define_common_flags
from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError, exit_on_user_error
from tf_benchmarks.core.faults import pause_point
from tf_benchmarks.pruning.file_model import model_of_file, resolve_model
from tf_benchmarks.runs.lock import RunLock
from tf_benchmarks.runs.record_check import safe_name

FLAGS = flags.FLAGS
UNLOCKED_MODES = ('export', 'export-keras', 'summary', 'verify', 'import', 'import-keras',
                  'latency-table')  # they write elsewhere (--out) or nothing


def working_directory_lock():
    """The lock of the working directory for a mode that writes there; none on the workers that
    write nothing."""
    return RunLock('.') if workers.writes_files() else contextlib.nullcontext()


def check_mode_name(mode):
    """A mode the table does not list by name is a file prefix: one path component."""
    if not safe_name(mode):
        raise UserError('mode %r: a mode name is part of its file names, so it may hold only '
                        'letters, digits, _, - and . (and is not . or ..), e.g. csgd1' % mode)


@dataclasses.dataclass
class Driver:
    """`modes` maps a mode to `run(model, settings, file, mode)` (`file` is the FILE argument of the
    `file_modes`, else None); `family(mode)` names the table entry of a mode the table does not
    list by name (C-SGD: any name containing `csgd` or `magnitude`, as the original), or None;
    `masked_version(model, weight_file)` runs a masked (AOFP tuned) file in `verify`, or None;
    `settings_from_flags(model)` the preset's settings for the model, `user_preset(preset, model)`
    those of a network that is not shipped."""
    script: str
    presets: Dict
    default_model: str
    settings_from_flags: Callable
    modes: Dict[str, Callable]
    file_modes: Tuple[str, ...]
    usage: str
    family: Callable[[str], Optional[str]] = lambda mode: None
    masked_version: Optional[Callable] = None

    def define_flags(self):
        """The flags every driver has (data, preset, model, run and scale-out flags, deploy)."""
        define_common_flags(self.presets, self.default_model)
        deploy_commands.define_flags()

    def entry(self, mode):
        if mode is None:
            return None
        return mode if mode in self.modes else self.family(mode)

    def main(self, argv):
        mode = argv[1] if len(argv) > 1 else None
        if mode in UNLOCKED_MODES:
            return deploy_commands.run_mode(argv, self.script, self.masked_version)
        if mode in deploy_commands.MODES:
            with working_directory_lock():
                return deploy_commands.run_mode(argv, self.script, self.masked_version)
        entry = self.entry(mode)
        if entry is None:
            raise UserError('unknown mode %s; %s'
                            % ('(none)' if mode is None else repr(mode), self.usage))
        if mode not in self.modes:
            check_mode_name(mode)
        if (mode in self.file_modes) != (len(argv) == 3) or len(argv) > 3:
            raise UserError(self.usage)
        if mode in self.file_modes and len(argv) == 3 and not FLAGS['model'].present:
            model = model_of_file(argv[2])  # the file's own network
        else:
            model = resolve_model(FLAGS.model)
        settings = self.settings_from_flags(model)
        with working_directory_lock():
            pause_point('locked')
            self.modes[entry](model, settings, argv[2] if len(argv) == 3 else None, mode)

    def run(self):
        """The console entry point: absl parses the flags, a user's error ends in one line."""
        app.run(exit_on_user_error(self.main))
