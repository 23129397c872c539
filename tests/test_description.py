"""Network descriptions (issue 24): every shipped model replays from its description to the same
trace and the same logits, a malformed description is one error naming the entry, weight files
carry their network and are rebuilt from it alone, nothing a file says is imported, and the NumPy
rules of --min_width and --round_to."""

import json
import os
import types

import numpy as np
import pytest

from helpers import random_weights
from conftest import REPO
from aofp.search import AofpSearch, kept_after_move
from csgd.targets import parse_target_deps, rounded_width
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import feeding_roots, from_description, get_model
from tf_benchmarks.models.user_models import load_python_file, spec_from_definition
from tf_benchmarks.network import description
from tf_benchmarks.pruning.file_model import model_of_file
from tf_benchmarks.runs.stages import StageRunner

RESNET20 = os.path.join(REPO, 'examples', 'resnet20.py')
SMALL = {  # (widths, image size) small enough for a graph in a second
    'vc': ([2, 2, 4, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8], 32),
    'dc40': ([4] + [2] * 12 + [6] + [2] * 12 + [6] + [2] * 12, 16),
    'src56': ([d // 8 for d in get_model('src56').default_deps], 16),
    'sres50': ([max(1, d // 32) for d in get_model('sres50').default_deps], 32),
}


def _summary(trace):
    return ([(n, v.shape, v.trainable, v.role) for n, v in trace.variables.items()],
            [(c.in_channels, c.out_channels, c.kernel_size, c.strides, c.out_hw) for c in trace.convs],
            trace.groups, trace.macs, dict(trace.slots))


@pytest.mark.parametrize('name', sorted(SMALL))
def test_a_shipped_model_and_its_description_build_the_same_network(name):
    model = get_model(name)
    deps, size = SMALL[name]
    copy = from_description(json.loads(json.dumps(dict(model.network, name=name + '_copy'))))
    assert not copy.builtin and copy.default_deps == model.default_deps
    shape = (size, size, 3)
    assert _summary(copy.trace(deps, image_shape=shape)) == _summary(model.trace(deps,
                                                                                 image_shape=shape))
    assert copy.groups == model.groups
    weights = random_weights(model.trace(deps, image_shape=shape), 3)
    images = np.random.default_rng(0).uniform(-1, 1, (4, size, size, 3)).astype(np.float32)
    ours = predict_logits(copy, deps, weights, images)
    np.testing.assert_array_equal(ours, predict_logits(model, deps, weights, images))
    assert ours.shape == (4, model.num_classes) and np.abs(ours).max() > 0


def test_a_shipped_description_is_the_registry_model_and_round_trips_as_bytes():
    for name in ('vc', 'dc40', 'src56', 'src110', 'sres50'):
        model = get_model(name)
        data = description.to_bytes(model.network)
        assert len(data) < 30000
        assert from_description(description.from_bytes(data, 'x')) is model
    assert get_model('sres50').network['builder'] == {'bn_epsilon': 1e-05}
    with pytest.raises(UserError, match='the name of a shipped model'):
        from_description(dict(get_model('vc').network, num_classes=3))


def _mutated(change):
    desc = json.loads(json.dumps(get_model('src56').network))
    change(desc)
    return desc


BAD = [
    (lambda d: d.update(format='tf_benchmarks.network/9'), r'^x: format: expected'),
    (lambda d: d['calls'][3].update(op='eval'), r'^x: calls\[3\]: op "eval" is not one of conv,'),
    (lambda d: d['calls'][17].update({'in': [40]}), r'^x: calls\[17\] \(\w+\): input 40 is not an '
     r'earlier node'),
    (lambda d: d['calls'][5]['args'].update(k_h=[[3]]), r'^x: calls\[5\] \(conv\): argument k_h: '),
    (lambda d: d['calls'][5]['args'].update(num_out={'width': 57}), r'calls\[5\] \(conv\): '
     r'argument num_out: a mapping value is \{"width": i\} with 0 <= i < 57'),
    (lambda d: d['calls'][5]['args'].update(code='import os'), r'calls\[5\] \(conv\): conv has no '
     r'parameter "code"'),
    (lambda d: d['calls'][5].update(scope='../x'), r'calls\[5\] \(conv\): scope "../x" is not'),
    (lambda d: d['calls'].extend([d['calls'][-1]] * description.MAX_CALLS), r'^x: calls: a list '),
    (lambda d: d['default_deps'].__setitem__(4, 0), r'^x: default_deps\[4\]: a width is'),
    (lambda d: d.pop('num_classes'), r'^x: it has no num_classes'),
]


@pytest.mark.parametrize('change,message', BAD)
def test_a_malformed_description_is_one_error_naming_the_entry(change, message):
    desc = _mutated(change)
    with pytest.raises(UserError, match=message):
        description.check_description(desc, 'x')
    if len(desc['calls']) < 1000:   # and the same as the bytes of a weight file
        with pytest.raises(UserError, match=message):
            description.from_bytes(description.to_bytes(desc), 'x')


@pytest.mark.parametrize('data', [b'\xff{', b'{"format": NaN}', b'[' * 100000, b'',
                                  b' ' * (description.MAX_BYTES + 1), b'{"a": 1e999999}'])
def test_bytes_that_are_not_a_description_are_one_error(data):
    with pytest.raises(UserError, match=r'^x: ') as e:
        description.from_bytes(data, 'x')
    assert '\n' not in str(e.value)


def test_a_width_computed_from_deps_is_an_error_naming_the_layer():
    def add_inference(cnn, deps, num_classes):
        cnn.conv(deps[0], 3, 3)
        cnn.conv(deps[1] * 2, 3, 3)
        cnn.spatial_mean()
        return cnn.affine(num_classes, activation='linear')
    net = types.SimpleNamespace(add_inference=add_inference, DEFAULT_DEPS=[4, 8])
    with pytest.raises(UserError, match=r'^net cannot be described: conv layer 1 '
                                        r'\(conv1/conv2d/kernel\) has 16 filters when deps\[1\] '
                                        r'is 8: its width is computed'):
        spec_from_definition(net, 'net.py', 'net')

    def fixed(cnn, deps, num_classes):   # right at DEFAULT_DEPS, wrong at any other widths
        cnn.conv(deps[0], 3, 3)
        cnn.conv(8, 3, 3)
        cnn.spatial_mean()
        return cnn.affine(num_classes, activation='linear')
    net = types.SimpleNamespace(add_inference=fixed, DEFAULT_DEPS=[4, 8])
    with pytest.raises(UserError, match=r'conv layer 1 \(conv1/conv2d/kernel\) has 8 filters '
                                        r'when deps\[1\] is 9'):
        spec_from_definition(net, 'net.py', 'net')


ADD_ERROR = ('net.py: add_inference failed while it was traced: ValueError: add of tensors whose '
             'channels come from differently laid out producers')


# A network the builders cannot express: an add of a concatenation and one conv's output (written
# to a net.py by test_own_network_cli.py).
BAD_ADD = '''
def add_inference(cnn, deps, num_classes):
    stem = cnn.conv(deps[0], 3, 3)
    a = cnn.conv(deps[1], 3, 3, input_layer=stem)
    b = cnn.conv(deps[2], 3, 3, input_layer=stem)
    joined = cnn.concat([a, b])
    cnn.add([joined, cnn.conv(deps[3], 1, 1, input_layer=stem)])
    cnn.spatial_mean()
    return cnn.affine(num_classes, activation='linear')
DEFAULT_DEPS = [4, 2, 2, 4]
'''


def test_an_add_of_differently_produced_channels_is_the_error_the_docs_quote():
    definitions = {}
    exec(BAD_ADD, definitions)  # the test's own source text
    net = types.SimpleNamespace(**{k: definitions[k] for k in ('add_inference', 'DEFAULT_DEPS')})
    with pytest.raises(UserError) as e:
        spec_from_definition(net, 'net.py', 'net')
    assert str(e.value) == ADD_ERROR
    assert ADD_ERROR in open(os.path.join(REPO, 'docs', 'own-network.md')).read().replace('\n', ' ')


def test_resnet20_derives_groups_targets_and_flops():
    model = load_python_file(RESNET20)
    assert model.name == 'resnet20' and len(model.default_deps) == 21
    assert [g.members for g in model.groups][:2] == [(0, 2, 4, 6), (1,)]
    assert model.default_target_layers == tuple(g.root for g in model.groups)  # all feed a conv/FC
    from tf_benchmarks.network import flops
    assert flops.count_flops(model, model.default_deps) == 40813184   # ResNet-20's 41M MACs
    assert flops.count_params(model, model.default_deps) == 272474


def test_a_group_no_layer_consumes_is_not_a_default_target():
    def add_inference(cnn, deps, num_classes):
        stem = cnn.conv(deps[0], 3, 3)
        cnn.conv(deps[1], 3, 3, input_layer=stem)          # a dead branch
        a = cnn.conv(deps[2], 3, 3, input_layer=stem)
        cnn.concat([stem, a])
        cnn.spatial_mean()
        return cnn.affine(num_classes, activation='linear')
    net = types.SimpleNamespace(add_inference=add_inference, DEFAULT_DEPS=[4, 2, 2])
    model = spec_from_definition(net, 'net.py', 'deadbranch')
    assert model.default_target_layers == (0, 2)
    assert feeding_roots(model.trace()) == (0, 2)


def test_weight_files_carry_the_network_and_are_rebuilt_from_it(tmp_path):
    model = load_python_file(RESNET20)
    deps = [2] * 7 + [4] * 14
    weights = random_weights(model.trace(deps), 0)
    path = str(tmp_path / 'r.hdf5')
    hdf5_io.save_hdf5(path, weights, deps, network=model.network, class_names=['a', 'b'])
    read = hdf5_io.read_hdf5(path)
    assert read.network == model.network and read.class_names == ('a', 'b')
    again = model_of_file(path)
    assert again.name == 'resnet20' and again.network == model.network
    assert again.default_target_layers == model.default_target_layers
    vc = get_model('vc')
    hdf5_io.save_hdf5(path, random_weights(vc.trace(SMALL['vc'][0]), 0), SMALL['vc'][0],
                      network=vc.network)
    assert model_of_file(path) is vc
    hdf5_io.save_hdf5(path, random_weights(vc.trace(SMALL['vc'][0]), 0), SMALL['vc'][0])
    assert model_of_file(path) is vc     # the originals' files: by their variables, as before


def test_nothing_a_file_says_is_imported(tmp_path):
    marker = tmp_path / 'imported'
    evil = tmp_path / 'evil.py'
    evil.write_text('open(%r, "w").write("x")\nDEFAULT_DEPS = [2]\n' % str(marker))
    model = load_python_file(RESNET20)
    net = dict(model.network, name='evil.py')
    path = str(tmp_path / 'evil.hdf5')
    deps = [2] * 21
    hdf5_io.save_hdf5(path, dict(random_weights(model.trace(deps), 0)), deps, network=net)
    assert model_of_file(path).name == 'evil.py'
    (tmp_path / 'run.json').write_text(json.dumps({
        'commands': [{'argv': ['aofp_standalone.py', 'prune', '--model', str(evil)]}],
        'stages': {'train': {'settings': {'model': str(evil)}, 'status': 'done'}},
        'networks': {description.digest(net): net}}))
    StageRunner([], record_path=str(tmp_path / 'run.json')).read_record()
    assert not marker.exists()
    with pytest.raises(UserError, match='defines no add_inference'):
        load_python_file(str(evil))      # named on the command line: imported, on purpose
    assert marker.exists()


def test_min_width_and_round_to_rules():
    # AOFP: kept = max(ceil((alive - passed) / M) * M, ceil(N / M) * M), never above alive
    assert kept_after_move(16, 8) == 8 and kept_after_move(10, 5) == 5
    assert kept_after_move(10, 5, round_to=4) == 8
    assert kept_after_move(10, 8, min_width=3) == 3
    assert kept_after_move(10, 8, min_width=3, round_to=4) == 4
    assert kept_after_move(8, 2, round_to=4) == 8      # no move: 2 removed filters would leave 6
    assert kept_after_move(3, 3, min_width=5) == 3     # a layer narrower than the floor keeps all
    # C-SGD / magnitude: a fraction's width rounded up to a multiple, floored, never wider
    assert [rounded_width(t, 16, 3, 4) for t in (1, 4, 5, 9, 16)] == [4, 4, 8, 12, 16]
    assert rounded_width(2, 10, 3, 1) == 3 and rounded_width(9, 10, 1, 4) == 10
    assert rounded_width(2, 4, 3, 2) == 4 and rounded_width(1, 2, 3, 1) == 2
    src56 = get_model('src56')
    target, = parse_target_deps(src56, src56.default_deps, '5/8', min_width=12, round_to=8)
    assert set(target[:19]) == {16} and set(target[19:38]) == {24} and set(target[38:]) == {40}


def test_the_search_keeps_every_width_at_the_floor_and_a_multiple():
    widths = [10, 16, 7]
    search = AofpSearch([np.ones(w, np.float32) for w in widths], 2, 100.0, 0, lambda w: 0.0,
                        1.0, min_width=3, round_to=4)
    seen = []
    for step in range(1, 200):
        search.step_masks()
        search.record(step, [0.0, 0.0, 0.0])
        seen.append(search.widths)
    assert search.widths == [4, 4, 4]
    for ws in seen:
        assert all(w == w0 or (w % 4 == 0 and w >= 3) for w, w0 in zip(ws, widths))
    plain = AofpSearch([np.ones(w, np.float32) for w in widths], 2, 100.0, 0, lambda w: 0.0, 1.0)
    for step in range(1, 200):
        plain.step_masks()
        plain.record(step, [0.0, 0.0, 0.0])
    assert plain.widths == [1, 1, 1]


def test_a_run_record_holds_only_checked_descriptions(tmp_path):
    net = get_model('src56').network
    record = {'commands': [], 'stages': {}, 'networks': {description.digest(net): net}}
    path = tmp_path / 'run.json'
    path.write_text(json.dumps(record))
    assert StageRunner([], record_path=str(path)).read_record()['networks'] == record['networks']
    for bad in ({'0' * 64: net}, {description.digest(net): dict(net, calls=[])}):
        path.write_text(json.dumps(dict(record, networks=bad)))
        with pytest.raises(UserError, match='is not a run record of this project'):
            StageRunner([], record_path=str(path)).read_record()


def test_a_package_entry_point_loads_only_for_a_name_no_shipped_model_has(tmp_path, monkeypatch):
    import importlib.metadata
    from tf_benchmarks.models import user_models
    (tmp_path / 'mynets.py').write_text(open(RESNET20).read().replace("NAME = 'resnet20'",
                                                                      "NAME = 'r20pkg'"))
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [importlib.metadata.EntryPoint('r20pkg', 'mynets', user_models.ENTRY_POINT_GROUP),
              importlib.metadata.EntryPoint('vc', 'no_such_module', user_models.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(user_models.importlib.metadata, 'entry_points',
                        lambda group: [p for p in points if p.group == group])
    model = user_models.resolve_model('r20pkg')
    assert model.name == 'r20pkg' and len(model.default_deps) == 21
    assert user_models.resolve_model('vc') is get_model('vc')   # built in first: not loaded
    with pytest.raises(UserError, match=r"unknown model 'nope'; known models: dc40, src110, src56, "
                                        r"sres50, vc, r20pkg, or a network of your own"):
        user_models.resolve_model('nope')


def test_aofp_and_csgd_cuts_of_a_concat_user_network_are_exact():
    """A small DenseNet-like network of your own: AOFP's masked model == its pruned model, and a
    trim of identical clusters changes no logit, the concatenation's consumers included."""
    from aofp.pipeline import masked_builder_factory
    from tf_benchmarks.pruning.surgery import apply_surgery, remove_masked

    def add_inference(cnn, deps, num_classes):
        stem = cnn.conv(deps[0], 3, 3)
        grown = cnn.conv(deps[1], 3, 3)
        cnn.concat([stem, grown])
        cnn.batch_norm()
        cnn.relu()
        cnn.mpool(2, 2)
        cnn.conv(deps[2], 1, 1)
        cnn.flatten()
        return cnn.affine(num_classes, activation='linear')
    model = spec_from_definition(types.SimpleNamespace(add_inference=add_inference,
                                                       DEFAULT_DEPS=[4, 4, 6], IMAGE_SIZE=8),
                                 'dense.py', 'dense')
    assert model.default_target_layers == (0, 1, 2)
    deps, trace = [4, 4, 6], model.trace([4, 4, 6])
    weights = random_weights(trace, 1)
    images = np.random.default_rng(2).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    masks = {0: np.array([1, 0, 1, 1], np.float32), 1: np.array([0, 1, 1, 0], np.float32),
             2: np.array([1, 1, 0, 1, 0, 1], np.float32)}
    masked = predict_logits(model, deps, weights, images, masked_builder_factory(sorted(masks)),
                            feed_fn=lambda b: {b.base_masks[i]: masks[i] for i in masks})
    pruned, small = remove_masked(trace, weights, masks)
    assert small == [3, 2, 4]
    np.testing.assert_allclose(predict_logits(model, small, pruned, images), masked, atol=1e-5)
    plans = {0: [[0, 2], [1], [3]], 1: [[0], [1, 3], [2]], 2: [[0, 5], [1, 2], [3], [4]]}
    for layer, clusters in plans.items():
        kernel = weights[trace.convs[layer].kernel]
        for cluster in clusters:
            kernel[..., cluster] = kernel[..., [min(cluster)]]
    from csgd.clustering import bn_channel_clusters
    bn_plans = bn_channel_clusters(trace, plans)
    assert bn_plans[2] == [[0, 2], [1], [3], [4], [5, 7], [6]]  # the BN over the concatenation
    for bn in trace.bns:
        for role in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            vector = weights['%s/%s' % (bn.scope, role)]
            for cluster in bn_plans[bn.index]:
                vector[cluster] = vector[min(cluster)]
    trimmed, small = apply_surgery(trace, weights, plans)
    assert small == [3, 3, 4]
    full = predict_logits(model, deps, weights, images)
    np.testing.assert_allclose(predict_logits(model, small, trimmed, images), full, atol=1e-5)
    assert np.abs(full).max() > 1e-2
