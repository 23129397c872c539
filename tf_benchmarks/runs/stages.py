"""The stage runner of both methods: runs a command's stages in order and keeps `run.json`, the
machine-readable record of every stage's settings, the digests of the files it read and wrote, and
the log sizes at its start. A stage is done when the record says so, never because a file or a log
line exists.

Resume order, on every run of a command:
  1. settings: a stage already in the record whose settings differ stops the run before anything is
     touched (with each differing setting, both values, and how to go on);
  2. `--restart_from STAGE`: that stage and every stage recorded after it are forgotten, their files
     and checkpoints removed and the logs cut back to where the stage started;
  3. every finished stage's outputs must still have their recorded digests;
  4. stages run in order; a finished one is skipped, an unfinished one resumes (its trainer from its
     last checkpoint, with the logs cut back to that checkpoint or to the stage's start).

A stage's `run()` may return its results (a JSON-able dict); they are stored in its record entry,
and results.json is rebuilt from the record after every finished stage and every restart
(runs/results.py).

In a multi-worker run the chief (worker 0) does all of this; every other worker follows it: at each
stage, after a barrier, it reads the chief's record and takes part in the stage's training unless the
record says the stage is done, and it writes nothing.
"""

import dataclasses
import glob
import json
import os
import shutil
import sys
import time
from typing import Callable, Dict, List

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.core.faults import crash_point
from tf_benchmarks.files.atomic import file_digest, temporary_name, write_json
from tf_benchmarks.network import description
from tf_benchmarks.runs.logs import LogBook
from tf_benchmarks.runs.record_check import check_inside, check_record
from tf_benchmarks.runs import results

RECORD = 'run.json'


def _plain(value):
    """Settings as JSON would give them back (tuples -> lists), so records compare equal."""
    return json.loads(json.dumps(value))


@dataclasses.dataclass
class Stage:
    """One step of a command. `run()` does the work and writes `outputs` (and may return results
    for results.json); `work_dirs` hold its checkpoints. `settings` are the flags and preset
    values that shape its result.

    An unfinished stage without work_dirs starts over, with the logs cut back to its start. One with
    work_dirs runs one Trainer, which cuts the logs back to its last checkpoint (or to the stage's
    start); such a stage writes log lines only from the trainer's hooks and after it returns."""
    name: str
    settings: Dict
    run: Callable[[], None]
    outputs: List[str] = dataclasses.field(default_factory=list)
    inputs: List[str] = dataclasses.field(default_factory=list)
    work_dirs: List[str] = dataclasses.field(default_factory=list)


class StageRunner:
    def __init__(self, stages, logs=None, record_path=RECORD, restart_from=None, argv=None,
                 log=print, network=None):
        """`network`: the description of a network that is not shipped, kept in the record under
        `networks` by its digest (the stages' settings hold the digest as network_sha256)."""
        self.network = network
        self.stages = list(stages)
        self.logs = logs or LogBook()
        self.record_path = record_path
        self.restart_from = restart_from
        self.argv = list(sys.argv if argv is None else argv)
        self.log = log

    # -- the record ------------------------------------------------------------------------------
    def read_record(self):
        """The record, checked (runs/record_check.py): well-formed and naming only paths inside
        the working directory; a UserError naming the file otherwise."""
        if not os.path.exists(self.record_path):
            return {'commands': [], 'stages': {}}
        try:
            with open(self.record_path) as f:
                record = json.load(f)
        except (ValueError, OSError) as e:
            raise UserError('%s is not a run record of this project (%s); move it away (its stages '
                            'then run again from the start) or run in a fresh directory'
                            % (os.path.abspath(self.record_path), e))
        if isinstance(record, dict):
            record.setdefault('commands', [])
        check_record(record, self.record_path)
        return record

    def _write(self, record):
        if workers.writes_files():
            try:
                write_json(self.record_path, record)
            except OSError as e:
                e.filename = os.path.abspath(self.record_path)
                raise

    def _root(self):
        return os.path.dirname(os.path.abspath(self.record_path))

    def _check_planned_paths(self):
        """This command's own outputs and work directories are inside the working directory too
        (a C-SGD mode name is part of its file names)."""
        for stage in self.stages:
            for path in stage.outputs + stage.work_dirs:
                check_inside(path, self._root(), 'stage %s: the path' % stage.name)

    def _remove_stale_temporaries(self):
        """run.json's and results.json's temporaries left by a killed command (this command holds
        the directory's lock, so no other one is writing them)."""
        for name in (self.record_path, results.results_path(self.record_path)):
            mine = temporary_name(name)
            for path in glob.glob(glob.escape(name) + '.tmp-*'):
                if path != mine and os.path.isfile(path):
                    os.remove(path)

    # -- checks before anything is touched --------------------------------------------------------
    def _differences(self, record):
        lines, first = [], None
        for stage in self.stages:
            entry = record['stages'].get(stage.name)
            if entry is None:
                continue
            old, new = entry['settings'], _plain(stage.settings)
            for key in sorted(set(old) | set(new)):
                if old.get(key, '(not set)') != new.get(key, '(not set)'):
                    lines.append('  %s: %s was %s, now %s' % (stage.name, key,
                                                             json.dumps(old.get(key, '(not set)')),
                                                             json.dumps(new.get(key, '(not set)'))))
                    first = first or stage.name
        return lines, first

    def _check_settings(self, record):
        lines, first = self._differences(record)
        if any(': network_sha256 was ' in line for line in lines):
            lines.append('  (network_sha256 is the digest of the network description: --model '
                         'now builds another network than the one this work was done with, e.g. '
                         'its .py file changed)')
        if lines:
            raise UserError(
                '%s records this work with other settings, so its files would not be what these '
                'flags ask for:\n%s\nNothing was changed. Run in a fresh directory to keep both, or '
                'pass --restart_from %s to redo that stage and the ones after it with the new '
                'settings.' % (os.path.abspath(self.record_path), '\n'.join(lines), first))

    def _check_outputs(self, record):
        for stage in self.stages:
            entry = record['stages'].get(stage.name)
            if not entry or entry.get('status') != 'done':
                continue
            for path, digest in entry.get('outputs', {}).items():
                if not os.path.exists(path) or file_digest(path) != digest:
                    raise UserError('%s, written by the finished stage %s, is %s since; put it back '
                                    'or pass --restart_from %s to redo it'
                                    % (path, stage.name, 'changed' if os.path.exists(path)
                                       else 'missing', stage.name))

    def _check_unrecorded_outputs(self, record):
        for stage in self.stages:
            if stage.name in record['stages']:
                continue
            for path in stage.outputs:
                if os.path.exists(path):
                    raise UserError('%s exists, but %s has no record of stage %s writing it; move it '
                                    'away (or run in a fresh directory) so that it is not '
                                    'overwritten' % (path, self.record_path, stage.name))

    def _restart(self, record, name):
        names = list(record['stages'])
        if name not in names:
            return
        forget = names[names.index(name):]
        entry = record['stages'][name]
        for stage_name in forget:
            old = record['stages'][stage_name]
            for path in list(old.get('outputs', {})) + old.get('planned_outputs', []):
                if os.path.exists(path):
                    os.remove(path)
            for directory in old.get('work_dirs', []):
                shutil.rmtree(directory, ignore_errors=True)
        self.logs.rewind(entry.get('logs_at_start'))
        for stage_name in forget:
            del record['stages'][stage_name]
        self._write(record)
        results.rebuild(record, self.record_path)
        self.log('restarting from stage %s: forgot %s' % (name, ', '.join(forget)))

    # -- running ----------------------------------------------------------------------------------
    def run(self):
        if not workers.writes_files():
            return self._follow()
        record = self.read_record()
        self._check_planned_paths()
        self._remove_stale_temporaries()
        planned = [s.name for s in self.stages]
        if self.restart_from is not None and self.restart_from not in planned + list(
                record['stages']):
            raise UserError('--restart_from %s: no such stage; the stages of this command are %s'
                            % (self.restart_from, ', '.join(planned)))
        if self.restart_from is None:
            self._check_settings(record)
        else:
            forgotten = dict(record['stages'])
            names = list(forgotten)
            if self.restart_from in names:
                for n in names[names.index(self.restart_from):]:
                    del forgotten[n]
            self._check_settings({'stages': forgotten})
            self._restart(record, self.restart_from)
        self._check_outputs(record)
        self._check_unrecorded_outputs(record)
        record['commands'].append({'argv': self.argv, 'started': time.strftime('%Y-%m-%dT%H:%M:%S')})
        if self.network is not None:
            record.setdefault('networks', {})[description.digest(self.network)] = self.network
        self._write(record)
        results.rebuild(record, self.record_path)
        for stage in self.stages:
            workers.barrier()  # the other workers have read the record up to here
            entry = record['stages'].get(stage.name)
            if entry and entry.get('status') == 'done':
                self.log('stage %s already done (%s)' % (stage.name, ', '.join(entry['outputs'])
                                                         or 'no files'))
                continue
            if entry is None:
                entry = record['stages'][stage.name] = {
                    'settings': _plain(stage.settings), 'status': 'running',
                    'logs_at_start': self.logs.sizes(), 'planned_outputs': list(stage.outputs),
                    'work_dirs': list(stage.work_dirs)}
                self._write(record)
            self.logs.stage_start = entry['logs_at_start']
            if not stage.work_dirs:  # no checkpoints: an unfinished stage starts over
                self.logs.rewind(entry['logs_at_start'])
            start = time.time()
            entry['inputs'] = {p: file_digest(p) for p in stage.inputs}
            stage_results = stage.run()
            if stage_results is not None:
                entry['results'] = _plain(stage_results)
            entry['outputs'] = {p: file_digest(p) for p in stage.outputs}
            entry['status'] = 'done'
            entry['finished'] = time.strftime('%Y-%m-%dT%H:%M:%S')
            entry['wall_s'] = round(entry.get('wall_s', 0) + time.time() - start, 1)
            self._write(record)
            results.rebuild(record, self.record_path)
            crash_point('between_stages')
        workers.barrier()
        return record

    def _follow(self):
        """A non-chief worker: the chief's stages, in step with it. Only stages that train (those
        with work_dirs) need this worker; the others (surgery, clustering) are the chief's alone, and
        their files are in the shared working directory before the next barrier."""
        for stage in self.stages:
            workers.barrier()
            entry = self.read_record()['stages'].get(stage.name)
            if stage.work_dirs and not (entry and entry.get('status') == 'done'):
                self.log('worker: stage %s' % stage.name)
                stage.run()
        workers.barrier()
        return None
