"""Latency (issue 25, parts 4 and 5): the per-layer table's keys, grid, interpolation and prediction,
malformed table files, and through the AOFP driver in one process: `latency-table` with few calls,
`summary --latency` (at most 20 timed calls) and a `prune` to a latency target taken from the table.
Timings are never asserted, only that they exist, are finite and positive, and how they combine."""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import error_lines, random_weights
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy import latency_table as lt
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.files.atomic import file_digest
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.runs.record_check import Malformed, check_results

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
TINY = [4, 4] + [8] * 11
PRUNED = [2, 3] + [5] * 11
CLI_DEPS = [2, 2] + [4] * 11       # the CLI cases' vc (a smaller table)
CLI_PRUNED = [1, 2] + [3] * 11
BATCH = 8
PRUNE = ['--preset', 'smoke', '--batches_per_half', '2', '--metric_limit', '10',
         '--search_max_epochs', '3', '--finetune_epochs', '0.1', '--latency_batch', str(BATCH),
         '--latency_calls', '2', '--latency_few_calls']
# Runs aofp_standalone.py's cases in one process, as tests/run_cases.py does; the argument @target
# becomes the latency target taken from the table made_up_table.json in the case's directory (times
# made up, so the search's path does not depend on the machine's load): 30% of the way from its
# predicted base latency to its prediction at width 1 everywhere.
RUNNER = '''
import json, os, runpy, sys
sys.path[:0] = [%r, os.path.join(%r, 'tests')]
from tf_benchmarks.engine.session import graph_mode
graph_mode()
from run_cases import run_case
from tf_benchmarks.deploy.latency_table import read_table
from tf_benchmarks.models.registry import get_model
script, cases = sys.argv[1], json.loads(sys.argv[2])
driver = runpy.run_path(script)
for cwd, args in cases:
    os.chdir(cwd)
    if '@target' in args:
        table = read_table('made_up_table.json')
        vc = get_model('vc')
        base = table.predict(vc, table.widths)['ms']
        ones = table.predict(vc, [1] * len(table.widths))['ms']
        target = base - 0.3 * (base - ones) + 5e-6  # reachable as %%.6f
        args = [('%%.6f' %% target if a == '@target' else a) for a in args]
        print('TARGET %%.6f' %% target, flush=True)
    run_case(driver, cwd, args)
''' % (REPO, REPO)


def _table_document(model, deps, batch=1, ms=lambda key, i, o: 0.01 + 0.001 * i * o):
    """A table of `model` at `deps` with made-up times `ms(key, in, out)` on the real grid."""
    entries = []
    for key, (ins, outs, layers) in lt.plan(model, deps, 11, 32, batch).items():
        (kh, kw), (sh, sw), padding, input_hw, output_hw, b = key
        for i in ins:
            for o in outs:
                entries.append(dict(kind='conv', kernel=[kh, kw], stride=[sh, sw],
                                    padding=padding, input_hw=list(input_hw),
                                    output_hw=list(output_hw), batch=b, layers=layers,
                                    ms=ms(key, i, o), calls=50, **{'in': i, 'out': o}))
    return dict(format=lt.FORMAT, model=model.name, widths=list(deps), num_classes=11,
                image_size=32, batch=batch, calls=50, whole_ms=2.0, entries=entries, probes=[])


def _write(path, document):
    path.write_text(json.dumps(document))
    return str(path)


def test_grid_and_keys():
    assert lt.grid(16) == [2, 4, 6, 8, 10, 12, 14, 16]
    assert lt.grid(3) == [1, 2, 3] and lt.grid(1) == [1]
    groups = lt.plan(get_model('vc'), TINY, 11, 32, 1)
    # one group per input size of vc (32, 16, 8, 4, 2): a conv's time depends on its shape and
    # on both widths; convs of one shape share a grid
    assert sorted(k[3] for k in groups) == [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    ins, outs, layers = groups[((3, 3), (1, 1), 'SAME', (32, 32), (32, 32), 1)]
    assert layers == [0, 1] and ins == [1, 2, 3, 4] and outs == [1, 2, 3, 4]  # conv0 reads 3
    ins, outs, layers = groups[((3, 3), (1, 1), 'SAME', (16, 16), (16, 16), 1)]
    assert layers == [2, 3] and ins == list(range(1, 9)) and outs == list(range(1, 9))


def test_prediction_is_the_sum_of_the_entries_plus_the_rest():
    vc = get_model('vc')
    table = lt.LatencyTable(_table_document(vc, TINY), 'made-up')
    layers = [0.01 + 0.001 * c.in_channels * c.out_channels for c in vc.trace(TINY).convs]
    assert table.rest_ms == pytest.approx(2.0 - sum(layers))
    at_base = table.predict(vc, TINY)
    assert at_base['ms'] == pytest.approx(2.0) and at_base['layers'] == pytest.approx(layers)
    # on the grid: the entries themselves; between: bilinear, exact for t = a + b * in * out
    for deps in (PRUNED, [1] * 13, [3, 1, 7, 2, 5, 5, 6, 8, 1, 4, 7, 3, 2]):
        expected = [0.01 + 0.001 * c.in_channels * c.out_channels
                    for c in vc.trace(deps).convs]
        predicted = table.predict(vc, deps)
        assert predicted['layers'] == pytest.approx(expected)
        assert predicted['ms'] == pytest.approx(table.rest_ms + sum(expected))
    # off-grid in between two points: linear
    doc = _table_document(vc, [16] + TINY[1:], ms=lambda key, i, o: 0.05 * o)
    table = lt.LatencyTable(doc, 'made-up')
    conv0 = vc.trace([3] + TINY[1:]).convs[0]
    assert conv0.out_channels == 3
    assert table.predict(vc, [3] + TINY[1:])['layers'][0] == pytest.approx(0.15)  # 2 and 4 on grid
    table.check_model(vc, TINY, 32, 1)
    with pytest.raises(UserError, match='covers .* up to 8 input and 8 output channels'):
        table.check_model(vc, [4, 4] + [16] * 11, 32, 1)
    with pytest.raises(UserError, match='batch 1, not vc at 32x32, batch 8; pass --latency_batch 1'):
        table.check_model(vc, TINY, 32, 8)


def test_below_the_grid_the_smallest_point_counts():
    vc = get_model('vc')
    doc = _table_document(vc, [16] * 13, ms=lambda key, i, o: 0.1 * o)
    table = lt.LatencyTable(doc, 'made-up')
    assert table.predict(vc, [1] * 13)['layers'][0] == pytest.approx(0.2)  # grid(16) starts at 2


@pytest.mark.parametrize('edit, message', [
    (lambda d: d['entries'][3].update(ms=-1.0), r'entries\[3\]\.ms is -1\.0, not a finite positive'),
    (lambda d: d['entries'][5].update(ms='fast'), r'entries\[5\]\.ms is .fast., not a finite'),
    (lambda d: d['entries'][2].pop('in'), r'entries\[2\] has no in'),
    (lambda d: d['entries'][4].update(kernel=[3]), r'entries\[4\]\.kernel is \[3\], not a pair'),
    (lambda d: d['entries'][1].update(padding='FULL'), r'entries\[1\]\.padding is .FULL.'),
    (lambda d: d['entries'].append(dict(d['entries'][0])), r'entries\[\d+\] \(conv 3x3 stride 1,1 '
                                                           r'SAME, input 32x32, output 32x32, '
                                                           r'batch 1, in 1, out 1\) is listed twice'),
    (lambda d: d['entries'].pop(0), r'the entry of conv 3x3 stride 1,1 SAME, input 32x32, output '
                                    r'32x32, batch 1, in 1, out 1 is missing'),
    (lambda d: d.update(whole_ms=0), r'whole_ms is 0, not a finite positive number'),
    (lambda d: d['entries'][0].update(calls=0), r'entries\[0\]\.calls is 0, not a positive integer'),
    (lambda d: d.update(format='other'), r'not a latency-table-v1 document'),
])
def test_malformed_tables_are_refused_naming_the_entry(tmp_path, edit, message):
    document = _table_document(get_model('vc'), TINY)
    edit(document)
    path = _write(tmp_path / 'table.json', document)
    with pytest.raises(UserError, match=r'is not a latency table of this project \(.*' + message):
        lt.read_table(path)


def test_non_finite_and_broken_files_are_refused(tmp_path):
    text = json.dumps(_table_document(get_model('vc'), TINY)).replace('"ms": 0.011', '"ms": NaN', 1)
    assert 'NaN' in text
    (tmp_path / 'nan.json').write_text(text)
    with pytest.raises(UserError, match='it holds NaN, not a finite number'):
        lt.read_table(str(tmp_path / 'nan.json'))
    (tmp_path / 'cut.json').write_text(text[:100])
    with pytest.raises(UserError, match='cut.json is not a latency table'):
        lt.read_table(str(tmp_path / 'cut.json'))
    with pytest.raises(UserError, match='does not exist; measure one with `latency-table'):
        lt.read_table(str(tmp_path / 'none.json'))


def test_results_latency_must_be_finite_positive():
    phase = dict(file='f.hdf5', flops_removed=0.5, top1=0.9, widths=[1],
                 latency=dict(model={'tflite': dict(batch1_median_ms=1.0, batch1_p95_ms=1.2,
                                                    images_per_s=float('inf'))}))
    document = dict(runs={'prune': dict(method='aofp', model='vc', base=dict(file='b', widths=[1]),
                                        iterations=[dict(iteration=0, tuned=phase)])})
    with pytest.raises(Malformed, match='latency.model.tflite.images_per_s is inf'):
        check_results(document)
    phase['latency']['model']['tflite']['images_per_s'] = 10.0
    check_results(document)


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.fixture(scope='module')
def cases(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('latency')
    vc = get_model('vc')
    hdf5_io.save_hdf5(str(work / 'vc_scratch_savedweights.hdf5'),
                      random_weights(vc.trace(CLI_DEPS), 5), CLI_DEPS)
    hdf5_io.save_hdf5(str(work / 'pruned.hdf5'), random_weights(vc.trace(CLI_PRUNED), 6),
                      CLI_PRUNED)
    table = ['latency-table', 'vc_scratch_savedweights.hdf5', '--out', 'latency_table.json',
             '--latency_batch', str(BATCH), '--latency_calls', '2']
    listed = [(work, table + ['--latency_few_calls']),
              (work, table[:3] + ['other.json'] + table[4:]),     # 2 calls, not allowed
              (work, ['summary', 'pruned.hdf5', '--json', '--latency', '--latency_calls', '8',
                      '--latency_batch', '4']),
              (work, ['prune', '--data_dir', synthetic_dir, '--target_latency_ms', '@target',
                      '--latency_table', 'made_up_table.json'] + PRUNE)]
    _write(work / 'made_up_table.json', _table_document(vc, CLI_DEPS, batch=BATCH))
    result = subprocess.run([sys.executable, '-c', RUNNER, AOFP, json.dumps(
        [[str(cwd), list(args)] for cwd, args in listed])], capture_output=True, text=True,
        timeout=600)
    outcomes = [json.loads(l[5:]) for l in result.stdout.splitlines() if l.startswith('CASE ')]
    assert len(outcomes) == len(listed), result.stdout[-3000:] + result.stderr[-3000:]
    target, = [float(l.split()[1]) for l in result.stdout.splitlines() if l.startswith('TARGET ')]
    return work, outcomes, target


def test_latency_table_mode(cases):
    work, (table, few, _, _), _ = cases
    assert table['code'] == 0, table['stderr'][-2000:]
    assert 'latency-table: wrote latency_table.json' in table['stdout']
    document = json.loads((work / 'latency_table.json').read_text())
    assert document['model'] == 'vc' and document['widths'] == CLI_DEPS
    assert document['batch'] == BATCH and document['calls'] == 2 and document['machine']['cpu']
    groups = lt.plan(get_model('vc'), CLI_DEPS, 11, 32, BATCH)
    assert len(document['entries']) == sum(len(i) * len(o) for i, o, _ in groups.values())
    assert all(_positive(e['ms']) and e['calls'] == 2 and e['batch'] == BATCH
               for e in document['entries'] + document['probes'])
    assert document['probes'] == []   # every width 1..4 is on the grid: nothing off it
    loaded = lt.read_table(str(work / 'latency_table.json'))
    assert loaded.predict(get_model('vc'), CLI_DEPS)['ms'] == pytest.approx(document['whole_ms'])
    assert few['code'] == 2
    assert error_lines(few['stderr']) == [
        'error: a latency table takes the median of at least 50 calls per entry; got '
        '--latency_calls 2 (pass --latency_few_calls to allow fewer)']
    assert not (work / 'other.json').exists()


def test_summary_latency_fields(cases):
    _, (_, _, summary, _), _ = cases
    assert summary['code'] == 0, summary['stderr'][-2000:]
    entry = json.loads(summary['stdout'])['latency']
    # one model (no --base): 8 batch-1 calls and 1 at batch 4 per runtime, 18 timed calls
    assert entry['calls'] == 8 and entry['throughput_calls'] == 1 and entry['throughput_batch'] == 4
    assert entry['machine']['cpu'] and entry['machine']['cpu_count'] >= 1
    assert entry['file'] == 'pruned.hdf5' and 'base' not in entry and 'speedup' not in entry
    assert set(entry['model']) >= {'savedmodel', 'tflite'}
    for figures in entry['model'].values():
        assert all(_positive(figures[k]) for k in ('batch1_median_ms', 'batch1_p95_ms',
                                                   'images_per_s'))
        assert figures['batch1_p95_ms'] >= figures['batch1_median_ms']
    assert entry['onnxruntime'].startswith('not measured: ') or 'onnxruntime' in entry['model']


def test_prune_to_a_latency_target_from_the_table(cases):
    work, (_, _, _, prune), target = cases
    assert prune['code'] == 0, prune['stderr'][-2000:]
    tuned = json.loads((work / 'results.json').read_text())['runs']['prune']['iterations'][0][
        'tuned']
    entry = tuned['latency_target']
    assert entry['target_ms'] == pytest.approx(target, rel=1e-5) and entry['batch'] == BATCH
    assert tuned['reached_target'] is True and entry['reached'] is True
    assert entry['predicted_ms'] <= entry['target_ms']
    assert _positive(entry['measured_ms']) and _positive(entry['table_widths_measured_now_ms'])
    assert entry['prediction_error'] == pytest.approx(entry['predicted_ms'] /
                                                      entry['measured_ms'] - 1)
    assert entry['rescaled_prediction_ms'] == pytest.approx(
        entry['predicted_ms'] * entry['table_widths_measured_now_ms'] / entry['table_whole_ms'])
    table = lt.read_table(str(work / 'made_up_table.json'))
    widths = tuned['widths']
    assert entry['predicted_ms'] == pytest.approx(table.predict(get_model('vc'), widths)['ms'])
    assert 'latency' not in tuned   # per-stage measurement is off in the tests ($AOFP_CSGD_LATENCY)
    digest = file_digest(str(work / 'made_up_table.json'))
    assert entry['table_sha256'] == digest
    stage = json.loads((work / 'run.json').read_text())['stages']['itr0.search']
    assert stage['settings']['latency_table_sha256'] == digest
    assert stage['inputs']['made_up_table.json'] == digest
    log = (work / 'bds_exps' / 'vc_reproduce_itr0_bdslog.txt').read_text()
    assert 'latency target: predicted %.3f ms <= target' % entry['predicted_ms'] in log


def _figures(ms):
    return {rt: dict(batch1_median_ms=ms, batch1_p95_ms=1.5 * ms, images_per_s=1000.0 / ms)
            for rt in ('savedmodel', 'tflite')}


def test_stage_meter_reuses_widths_and_computes_speedups(tmp_path, monkeypatch):
    """The stages' LatencyMeter: the base timed beside each new model, a file at widths measured
    before reusing that measurement, none of it exported twice (worker and export faked: the first
    export, the model, 2 ms; the others 4 ms)."""
    from tf_benchmarks.deploy import latency
    vc = get_model('vc')
    paths = {}
    for name, deps in (('base', TINY), ('tuned', PRUNED), ('fted', PRUNED), ('same', TINY)):
        paths[name] = str(tmp_path / (name + '.hdf5'))
        hdf5_io.save_hdf5(paths[name], random_weights(vc.trace(deps), 1), deps)
    exported, timed = [], []
    monkeypatch.setattr(latency, 'export_file', lambda path, out, **kw: exported.append(path))
    monkeypatch.setattr(latency, 'run_worker', lambda dirs, settings, size: (
        timed.append(list(dirs)) or [_figures(2.0 if d.endswith('export0') else 4.0) for d in dirs]))
    meter = latency.LatencyMeter(latency.LatencySettings(10, 8), paths['base'])
    tuned = meter.measure(paths['tuned'])
    assert tuned['speedup']['tflite'] == {'batch1': 2.0, 'throughput': 2.0}  # base 4 ms, model 2
    assert tuned['calls'] == 10 and tuned['throughput_calls'] == 2 and tuned['throughput_batch'] == 8
    fted = meter.measure(paths['fted'])
    assert fted['same_widths_as'] == paths['tuned'] and fted['file'] == paths['fted']
    assert fted['model'] == tuned['model']
    same = meter.measure(paths['same'])   # the base's widths: timed alone, speed-up 1
    assert same['speedup']['savedmodel'] == {'batch1': 1.0, 'throughput': 1.0}
    assert len(timed) == 2 and [len(d) for d in timed] == [2, 1]
    assert exported == [paths['tuned'], paths['base']]
    assert 'x2.00, x2.00 the base' in latency.describe(tuned)
    meter.close()


def test_report_draws_and_lists_the_speedup(tmp_path):
    from tf_benchmarks.deploy.report_plots import make_report
    from tf_benchmarks.files.atomic import write_json

    def phase(removed, speedup, **extra):
        return dict(file='f%d.hdf5' % int(100 * removed), flops_removed=removed, top1=0.9,
                    widths=[1], latency=dict(model=_figures(2.0), base=_figures(2.0 * speedup),
                                             throughput_batch=32,
                                             speedup={rt: dict(batch1=speedup, throughput=speedup)
                                                      for rt in ('savedmodel', 'tflite')}),
                    **extra)
    target = dict(target_ms=3.0, predicted_ms=2.9, measured_ms=2.5, batch=32)
    iterations = [dict(iteration=0, tuned=phase(0.3, 1.4, latency_target=target),
                       finetuned=dict(phase(0.3, 1.4), latency=dict(
                           phase(0.3, 1.4)['latency'], same_widths_as='f30.hdf5'))),
                  dict(iteration=1, tuned=phase(0.5, 1.9))]
    write_json(str(tmp_path / 'results.json'), dict(format='results-v1', runs={'prune': dict(
        method='aofp', model='vc', base=dict(file='b.hdf5', widths=[1]),
        iterations=iterations)}))
    lines = []
    written = make_report(str(tmp_path), log=lines.append)
    assert str(tmp_path / 'report_prune_speedup_vs_flops.png') in written
    numbers = json.loads((tmp_path / 'report_prune_latency.json').read_text())
    assert [(m['iteration'], m['phase']) for m in numbers['measurements']] == [(0, 'tuned'),
                                                                               (1, 'tuned')]
    assert '  itr 0 tuned      30.0% FLOPs removed: savedmodel x1.40 / x1.40, tflite x1.40 / ' \
           'x1.40' in lines
    assert '    latency target 3.000 ms: predicted 2.900 ms, measured 2.500 ms (+16.0%)' in lines
