"""End to end through `python aofp/aofp_standalone.py` on a tiny vc and the synthetic set: files,
keys, log lines, resumption after an interrupt, and clear errors."""

import json
import os
import signal
import subprocess
import sys

import h5py
import pytest

from conftest import REPO
from helpers import error_lines, run_driver_cases, run_script

SCRIPT = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
TINY = ['--preset', 'smoke', '--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8']
PRUNE = ['--preset', 'smoke', '--itr_schedule', '0.25', '--batches_per_half', '4',
         '--finetune_epochs', '0.5', '--search_max_epochs', '20']
SHORT = ['--search_max_epochs', '6']  # a search that never reaches its target ends at step 60


def run(args, cwd, check=True):
    return run_script(SCRIPT, args, cwd, check)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('aofp')
    run(['train', '--data_dir', synthetic_dir, '--max_epochs', '1'] + TINY, work)
    return work


def test_train_eval_prune_files_keys_and_logs(trained, synthetic_dir):
    work = trained
    with h5py.File(work / 'vc_scratch_savedweights.hdf5', 'r') as f:
        assert f['deps'][()].tolist() == [4, 4] + [8] * 11
        assert 'v0+cg+conv0+conv2d+kernel:0' in f and 'v0+cg+affine1+dense+bias:0' in f
    out = run(['eval', 'vc_scratch_savedweights.hdf5', '--data_dir', synthetic_dir], work).stdout
    assert 'top1' in out
    records = (work / 'bc_overall_eval_records.txt').read_text().splitlines()
    assert len(records) == 1 and records[0].startswith('vc,vc_scratch_savedweights.hdf5,top1=0.')

    run(['prune', '--data_dir', synthetic_dir, '--metric_limit', '10'] + PRUNE, work)
    prefix = work / 'bds_exps' / 'vc_reproduce_itr0'
    with h5py.File(str(prefix) + '_tunedweights.hdf5', 'r') as f:
        keys = set(f.keys())
        masks = [f['base_mask_value%d' % i][()] for i in range(13)]
        assert f['deps'][()].tolist() == [4, 4] + [8] * 11
        kernel_shape = f['v0+cg+conv1+conv2d+kernel:0'].shape
    assert {'base_mask_value%d' % i for i in range(13)} <= keys
    assert kernel_shape == (3, 3, 4, 4)
    widths = [int(m.sum()) for m in masks]
    assert widths[0] < 4 and all(w >= 1 for w in widths)
    for stage in ('pruned', 'fted'):
        with h5py.File('%s_%sweights.hdf5' % (prefix, stage), 'r') as f:
            assert f['deps'][()].tolist() == widths
            assert not any(k.startswith('base_mask_value') for k in f.keys())
            assert f['v0+cg+conv1+conv2d+kernel:0'].shape == (3, 3, widths[0], widths[1])
            assert f['v0+cg+affine0+dense+kernel:0'].shape == (widths[12], 512)
    lines = (work / 'bds_overall_logs.txt').read_text().splitlines()
    assert len(lines) == 3
    assert [l for l in lines if 'fted' in l] == [lines[2]]
    assert 'after tuning, the masks suggest deps=%s' % widths in lines[0]
    for line in lines:
        assert 'flops_pruned=0.' in line and str(widths) in line
    top1 = [l.split('top1=')[1].split(',')[0] for l in lines]
    assert top1[0] == top1[1]
    assert 'move to next move' in (work / 'bds_exps' / 'vc_reproduce_itr0_bdslog.txt').read_text()

    # results.json: the three evaluations of the iteration, as the log states them
    results = json.loads((work / 'results.json').read_text())
    run_results = results['runs']['prune']
    assert run_results['method'] == 'aofp' and run_results['base']['widths'] == [4, 4] + [8] * 11
    iteration, = run_results['iterations']
    assert [p for p in ('tuned', 'pruned', 'finetuned') if p in iteration] == \
        ['tuned', 'pruned', 'finetuned']
    for line, phase in zip(lines, ('tuned', 'pruned', 'finetuned')):
        entry = iteration[phase]
        assert entry['widths'] == widths and entry['file'] == line.split(',')[1]
        assert '%.5f' % entry['top1'] == line.split('top1=')[1].split(',')[0]
        assert 'flops_pruned=%.4f' % entry['flops_removed'] in line
        assert entry['wall_s'] >= 0 and entry['images'] == 200
    assert iteration['tuned']['target_flops_removed'] == 0.25
    results_bytes = (work / 'results.json').read_bytes()

    # a finished iteration is never redone
    stamps = {p: os.path.getmtime(p) for p in (work / 'bds_exps').glob('*.hdf5')}
    out = run(['prune', '--data_dir', synthetic_dir, '--metric_limit', '10'] + PRUNE, work).stdout
    assert 'stage itr0.finetune already done' in out
    assert (work / 'bds_overall_logs.txt').read_text().splitlines() == lines
    assert stamps == {p: os.path.getmtime(p) for p in (work / 'bds_exps').glob('*.hdf5')}
    assert (work / 'results.json').read_bytes() == results_bytes

    # other settings in the same directory stop at once, naming each difference
    other = work / 'other_base.hdf5'
    other.write_bytes((work / 'vc_scratch_savedweights.hdf5').read_bytes())
    args = ['prune', '--data_dir', synthetic_dir, '--metric_limit', '10'] + PRUNE
    pruned = 'bds_exps/vc_reproduce_itr0_prunedweights.hdf5'
    outcomes = run_driver_cases(SCRIPT, [(work, args + ['--metric_limit', '5']),
                                         (work, args + ['--itr_schedule', '0.3']),
                                         (work, args + ['--base_weights', 'other_base.hdf5']),
                                         (work, ['summary', pruned, '--base',
                                                 'vc_scratch_savedweights.hdf5', '--json']),
                                         (work, ['report'])])
    summary, report = outcomes[3:]
    assert summary['code'] == 0 and report['code'] == 0, (summary, report)
    total = json.loads(summary['stdout'])['total']  # the FLOPs the log reports
    assert 'flops_pruned=%.4f' % total['flops_removed'] in lines[1]
    assert total['flops_removed'] == iteration['pruned']['flops_removed']
    assert total['flops'] == iteration['pruned']['flops']
    assert sorted(p.name for p in work.glob('*.png')) == ['report_prune_top1_vs_flops.png',
                                                         'report_prune_widths.png']
    expected = ['itr0.search: metric_limit was 10.0, now 5.0', 'itr0.search: target was 0.25, now 0.3',
                'itr0.search: start was "vc_scratch_savedweights.hdf5", now "other_base.hdf5"']
    for outcome, line in zip(outcomes, expected):
        assert outcome['code'] == 2 and len(error_lines(outcome['stderr'])) == 1
        assert line in outcome['stderr'] and '--restart_from itr0.search' in outcome['stderr']
    assert (work / 'bds_overall_logs.txt').read_text().splitlines() == lines


def test_interrupted_prune_resumes_from_its_checkpoint(trained, synthetic_dir, tmp_path):
    work = tmp_path
    os.symlink(trained / 'vc_scratch_savedweights.hdf5', work / 'vc_scratch_savedweights.hdf5')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, SCRIPT, 'prune', '--data_dir', synthetic_dir,
                             '--metric_limit', '0'] + PRUNE + SHORT, cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith('step 40/'):
            proc.send_signal(signal.SIGINT)
            break
    output = proc.stdout.read()
    assert proc.wait(timeout=120) == 130
    assert 'checkpoint saved at step' in output
    assert not (work / 'bds_exps' / 'vc_reproduce_itr0_tunedweights.hdf5').exists()
    out = run(['prune', '--data_dir', synthetic_dir, '--metric_limit', '0'] + PRUNE + SHORT,
              work).stdout
    resumed = [l for l in out.splitlines() if l.startswith('resumed from')]
    assert resumed and resumed[0].startswith('resumed from bds_exps/vc_reproduce_itr0_train at step')
    assert int(resumed[0].split()[-1]) >= 40
    assert (work / 'bds_exps' / 'vc_reproduce_itr0_ftedweights.hdf5').exists()


def test_bad_input_gives_one_clear_error(tmp_path, synthetic_dir):
    result = run(['shrink'], tmp_path, check=False)
    assert result.returncode == 2 and 'error: unknown mode' in result.stderr
    result = run(['train', '--data_dir', str(tmp_path / 'nothing')], tmp_path, check=False)
    assert result.returncode == 2 and 'no CIFAR-10 train records' in result.stderr
    from tf_benchmarks.files import hdf5_io
    hdf5_io.save_hdf5(str(tmp_path / 'dc40.hdf5'), {'conv0/kernel': [[1.0]]}, deps=[16] * 39)
    result = run(['eval', 'dc40.hdf5', '--data_dir', synthetic_dir], tmp_path, check=False)
    assert result.returncode == 2 and 'another architecture' in result.stderr
    result = run(['prune', '--data_dir', synthetic_dir], tmp_path, check=False)
    assert result.returncode == 2 and 'run `aofp_standalone.py train --model vc` first' in result.stderr
    assert 'Traceback' not in result.stderr
