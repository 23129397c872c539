"""The stage runner without TensorFlow: resume, stale settings refused before anything changes,
--restart_from, outputs checked by digest, log rewinding, and the run record."""

import json
import os

import pytest

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.runs.logs import LogBook
from tf_benchmarks.runs.stages import Stage, StageRunner
from tf_benchmarks.files.atomic import file_digest


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The runner's paths are relative to the working directory, as in a real run."""
    monkeypatch.chdir(tmp_path)


class Work:
    """Three stages a -> b -> c, each writing its file (named relative to the working directory,
    tmp_path) and a log line; `calls` records runs."""

    def __init__(self, path, fail_at=None):
        self.path = path
        self.calls = []
        self.fail_at = fail_at
        self.log = str(path / 'log.txt')

    def stage(self, name, settings):
        def run():
            self.calls.append(name)
            with open(self.log, 'a') as f:
                f.write('%s ran with %s\n' % (name, json.dumps(settings)))
            if name == self.fail_at:
                raise RuntimeError('killed in ' + name)
            (self.path / (name + '.out')).write_text(name + json.dumps(settings))
        return Stage(name, settings, run, outputs=[name + '.out'])

    def runner(self, settings=None, restart_from=None):
        settings = settings or {}
        stages = [self.stage(n, {'x': settings.get(n, 1)}) for n in ('a', 'b', 'c')]
        return StageRunner(stages, LogBook([self.log]), str(self.path / 'run.json'),
                           restart_from, argv=['test'], log=lambda m: None)


def _files(path):
    return {p: open(os.path.join(path, p), 'rb').read() for p in sorted(os.listdir(path))}


def test_a_rerun_redoes_nothing_and_a_stopped_run_resumes_at_its_stage(tmp_path):
    work = Work(tmp_path, fail_at='b')
    with pytest.raises(RuntimeError):
        work.runner().run()
    assert work.calls == ['a', 'b']
    work.fail_at = None
    record = work.runner().run()
    assert work.calls == ['a', 'b', 'b', 'c']
    # the stopped stage's line is written once: the log went back to where b started
    assert open(work.log).read().splitlines() == ['a ran with {"x": 1}', 'b ran with {"x": 1}',
                                                  'c ran with {"x": 1}']
    assert [record['stages'][n]['status'] for n in 'abc'] == ['done'] * 3
    assert record['stages']['c']['outputs'] == {'c.out': file_digest('c.out')}
    work.runner().run()
    assert work.calls == ['a', 'b', 'b', 'c']
    saved = json.load(open(tmp_path / 'run.json'))
    assert saved['stages']['b']['settings'] == {'x': 1} and len(saved['commands']) == 3


def test_other_settings_stop_before_anything_changes(tmp_path):
    work = Work(tmp_path)
    work.runner().run()
    before = _files(tmp_path)
    with pytest.raises(UserError) as error:
        work.runner({'b': 2, 'c': 3}).run()
    message = str(error.value)
    assert '  b: x was 1, now 2' in message and '  c: x was 1, now 3' in message
    assert '--restart_from b' in message and 'fresh directory' in message
    assert _files(tmp_path) == before and work.calls == ['a', 'b', 'c']


def test_restart_from_redoes_that_stage_and_the_later_ones(tmp_path):
    work = Work(tmp_path)
    work.runner().run()
    work.runner({'b': 2}, restart_from='b').run()
    assert work.calls == ['a', 'b', 'c', 'b', 'c']
    assert open(work.log).read().splitlines() == ['a ran with {"x": 1}', 'b ran with {"x": 2}',
                                                  'c ran with {"x": 1}']
    assert (tmp_path / 'b.out').read_text() == 'b{"x": 2}'
    with pytest.raises(UserError, match='no such stage; the stages of this command are a, b, c'):
        work.runner(restart_from='z').run()
    with pytest.raises(UserError, match='a: x was 1, now 5'):   # stages before it still checked
        work.runner({'a': 5, 'b': 2}, restart_from='b').run()


def test_a_changed_or_missing_output_is_refused(tmp_path):
    work = Work(tmp_path)
    work.runner().run()
    (tmp_path / 'a.out').write_text('edited')
    with pytest.raises(UserError, match='a.out, written by the finished stage a, is changed since'):
        work.runner().run()
    os.remove(tmp_path / 'a.out')
    with pytest.raises(UserError, match='is missing since; put it back or pass --restart_from a'):
        work.runner().run()
    assert work.calls == ['a', 'b', 'c']


def test_a_file_the_record_does_not_know_is_never_overwritten(tmp_path):
    (tmp_path / 'b.out').write_text('somebody else\'s')
    work = Work(tmp_path)
    with pytest.raises(UserError, match='b.out exists, but .* has no record of stage b'):
        work.runner().run()
    assert work.calls == [] and not (tmp_path / 'run.json').exists()


def test_log_book_rewinds_to_recorded_sizes(tmp_path):
    log = tmp_path / 'l.txt'
    book = LogBook([str(log)])
    log.write_text('one\n')
    sizes = book.sizes()
    log.write_text('one\ntwo\n')
    book.rewind(sizes)
    assert log.read_text() == 'one\n'
    book.rewind({})
    assert log.read_text() == ''
