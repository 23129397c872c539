"""results.json without TensorFlow: rebuilt from run.json by the stage runner, so a stopped run,
a re-run and --restart_from list every finished stage once and nothing else."""

import json

import pytest

from tf_benchmarks.runs import results
from tf_benchmarks.engine.evaluation import EvalResult
from tf_benchmarks.runs.logs import LogBook
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.runs.stages import Stage, StageRunner

VC = get_model('vc')
BASE = [8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16]
PHASES = (('itr0.search', 0, 'tuned'), ('itr0.prune', 0, 'pruned'), ('itr1.search', 1, 'tuned'))


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The runner's paths are relative to the working directory, as in a real run."""
    monkeypatch.chdir(tmp_path)


class Work:
    def __init__(self, path):
        self.path = path
        self.fail_at = None

    def stage(self, name, k, phase):
        def run():
            if name == self.fail_at:
                raise RuntimeError('killed in ' + name)
            (self.path / (name + '.out')).write_text(name)
            widths = [w // (k + 2) for w in BASE]
            entry = results.evaluation(VC, name + '.out', widths, BASE,
                                       EvalResult(0.5 + k / 10, 0.9, 1.25, 200))
            return results.stage_result('prune', 'aofp', VC,
                                        results.base_entry(VC, 'base.hdf5', BASE), k, phase,
                                        entry, target_flops_removed=0.3)
        return Stage(name, {}, run, outputs=[name + '.out'])

    def run(self, restart_from=None):
        StageRunner([self.stage(*p) for p in PHASES], LogBook(), str(self.path / 'run.json'),
                    restart_from, argv=['test'], log=lambda m: None).run()
        return json.loads((self.path / 'results.json').read_text())


def _phases(document):
    return [(it['iteration'], phase) for it in document['runs']['prune']['iterations']
            for phase in it if isinstance(it[phase], dict)]


def test_results_follow_the_run_record_through_stops_reruns_and_restarts(tmp_path):
    work = Work(tmp_path)
    work.fail_at = 'itr0.prune'
    with pytest.raises(RuntimeError):
        work.run()
    document = json.loads((tmp_path / 'results.json').read_text())
    assert _phases(document) == [(0, 'tuned')]

    work.fail_at = None
    document = work.run()
    assert _phases(document) == [(0, 'tuned'), (0, 'pruned'), (1, 'tuned')]
    run = document['runs']['prune']
    assert run['method'] == 'aofp' and run['model'] == 'vc' and run['base']['widths'] == BASE
    tuned = run['iterations'][1]['tuned']
    widths = [w // 3 for w in BASE]
    assert tuned['widths'] == widths and tuned['top1'] == 0.6 and tuned['loss'] == 1.25
    assert tuned['flops'] == results.flops.count_flops(VC, widths)
    assert tuned['flops_removed'] == pytest.approx(
        results.flops.flops_pruned_ratio(VC, widths, BASE))
    assert tuned['stage'] == 'itr1.search' and tuned['target_flops_removed'] == 0.3
    assert isinstance(tuned['wall_s'], float)

    assert work.run() == document  # a re-run changes nothing

    work.fail_at = 'itr0.prune'
    with pytest.raises(RuntimeError):
        work.run(restart_from='itr0.prune')
    assert _phases(json.loads((tmp_path / 'results.json').read_text())) == [(0, 'tuned')]
    work.fail_at = None
    assert _phases(work.run()) == [(0, 'tuned'), (0, 'pruned'), (1, 'tuned')]


def test_report_needs_a_results_file(tmp_path):
    with pytest.raises(results.UserError, match='has no results.json'):
        results.read_results(str(tmp_path))
    (tmp_path / 'results.json').write_text('{"runs": 3}')
    with pytest.raises(results.UserError, match='not a results file of this project'):
        results.read_results(str(tmp_path))
