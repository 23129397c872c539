"""The Python API (tf_benchmarks.api): networks load in-process with their groups, targets and
description; a file's summary; commands run as the drivers' own, a failure their error line."""

import os

import pytest

from conftest import REPO
from helpers import random_weights
from tf_benchmarks import api
from tf_benchmarks.api.calls import _flag_args
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network import description

NET = os.path.join(REPO, 'examples', 'resnet20.py')


def test_networks_load_with_what_the_project_derives(tmp_path):
    net = api.load_network(NET)
    assert net.groups[0].members == (0, 2, 4, 6) and len(net.default_target_layers) == 12
    assert api.load_network('src56').builtin
    desc = api.network_description(NET)
    assert desc['name'] == 'resnet20' and len(desc['calls']) == 41
    deps = [2] * 7 + [4] * 14
    path = str(tmp_path / 'r.hdf5')
    hdf5_io.save_hdf5(path, random_weights(net.trace(deps), 0), deps, network=desc)
    assert api.load_network(path).network == desc
    (tmp_path / 'net.json').write_bytes(description.to_bytes(desc))
    assert api.load_network(str(tmp_path / 'net.json')).network == desc   # data: nothing runs
    summary = api.summary(path)
    assert summary['model'] == 'resnet20' and summary['widths'] == deps
    assert summary['total']['flops'] == sum(r['flops'] for r in summary['layers'])


def test_a_command_runs_as_the_driver_does(tmp_path, synthetic_dir):
    net = api.load_network(NET)
    deps = [2] * 7 + [4] * 14
    path = str(tmp_path / 'r.hdf5')
    hdf5_io.save_hdf5(path, random_weights(net.trace(deps), 0), deps, network=net.network)
    run = api.evaluate(path, workdir=str(tmp_path / 'w'), data_dir=synthetic_dir)
    assert run.stdout.startswith('top1 ') and '(200 images)  deps %s' % deps in run.stdout
    assert (tmp_path / 'w' / 'bc_overall_eval_records.txt').read_text().startswith('resnet20,')
    assert run.results() is None


def test_flags_and_a_failing_command(tmp_path):
    os.makedirs(tmp_path / 'data')
    assert _flag_args({'round_to': 8, 'tflite': True, 'json': False, 'deps': [4, 8],
                       'data_dir': str(tmp_path / 'data'), 'image_size': None}) == [
        '--data_dir=%s' % (tmp_path / 'data'), '--deps=4,8', '--nojson', '--round_to=8',
        '--tflite']
    with pytest.raises(UserError, match=r'^unknown model .nonet.; known models: dc40, src110, src56, sres50, vc, or a network of your own'):
        api.prune('csgd', 'nonet', workdir=str(tmp_path / 'w'))
