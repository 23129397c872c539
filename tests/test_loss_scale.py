"""fp16's dynamic loss scaling: the rule in plain Python (growth after 2000 finite steps, halving
and a skipped update on a non-finite one, the floor, float32 limits), and the trainer's graph
version against it over scripted finite / non-finite steps of a tiny fp16 vc on the CPU: skipped
steps change no variable, a real float16 overflow is caught, the floor stops the run, a resumed run
continues the scale where the checkpoint left it."""

import json
import os

import numpy as np
import pytest

import tensorflow.compat.v1 as tf
from conftest import REPO
from helpers import run_script
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine import loss_scale
from tf_benchmarks.engine.hooks import TrainHook
from tf_benchmarks.engine.loss_scale import LossScaleRule, LossScaleState, next_state, replay
from tf_benchmarks.engine.method import MethodBundle
from tf_benchmarks.engine.train_config import TrainConfig
from tf_benchmarks.engine.trainer import Trainer
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.convnet_builder import ConvNetBuilder

DEPS = [4] * 13


# -- the rule, without a graph --------------------------------------------------------------------
def test_defaults_are_the_standard_ones():
    rule = LossScaleRule()
    assert (rule.initial, rule.growth_steps, rule.factor, rule.floor) == (32768.0, 2000, 2.0, 1.0)
    assert loss_scale.initial_state(rule) == LossScaleState(32768.0, 0)


def test_the_scale_doubles_after_2000_finite_steps_in_a_row():
    rule = LossScaleRule()
    states = replay(rule, [True] * 4001)
    assert states[1998] == LossScaleState(32768.0, 1999)
    assert states[1999] == LossScaleState(65536.0, 0)
    assert states[3999] == LossScaleState(131072.0, 0)
    assert states[4000] == LossScaleState(131072.0, 1)


def test_a_non_finite_step_halves_the_scale_and_restarts_the_count():
    rule = LossScaleRule()
    states = replay(rule, [True] * 1500 + [False] + [True] * 2000)
    assert states[1499] == LossScaleState(32768.0, 1500)
    assert states[1500] == LossScaleState(16384.0, 0)
    assert states[3499] == LossScaleState(16384.0, 1999)  # 2000 more, not 500, to grow again
    assert states[3500] == LossScaleState(32768.0, 0)
    assert [loss_scale.applies_update(f) for f in (True, False)] == [True, False]


def test_the_scale_never_falls_below_the_floor():
    rule = LossScaleRule()
    scales = [s.scale for s in replay(rule, [False] * 20)]
    assert scales[:3] == [16384.0, 8192.0, 4096.0]
    assert scales[14] == 1.0 and scales[-1] == 1.0 and min(scales) == 1.0
    assert not loss_scale.at_floor(rule, 2.0) and loss_scale.at_floor(rule, 1.0)
    assert replay(LossScaleRule(initial=6.0, floor=4.0), [False])[0].scale == 4.0


def test_growth_stops_below_float32_overflow():
    rule = LossScaleRule(initial=2.0 ** 127, growth_steps=1)
    assert replay(rule, [True, True]) == [LossScaleState(2.0 ** 127, 0)] * 2
    assert replay(LossScaleRule(initial=2.0 ** 126, growth_steps=1), [True])[0].scale == 2.0 ** 127


def test_the_arithmetic_is_float32_as_in_the_graph():
    rule = LossScaleRule(initial=1000.0, growth_steps=1, factor=1.1, floor=0.5)
    states = replay(rule, [False] * 3 + [True])
    expected = np.float32(1000.0)
    for _ in range(3):
        expected = expected / np.float32(1.1)
    assert states[2].scale == float(expected) != 1000.0 / 1.1 ** 3
    assert states[3].scale == float(expected * np.float32(1.1))


@pytest.mark.parametrize('fields, message', [
    (dict(initial=0.0), 'initial must be a positive finite'),
    (dict(initial=float('inf')), 'initial must be a positive finite'),
    (dict(factor=1.0), 'factor must be above 1'),
    (dict(initial=0.5), 'between the floor'),
    (dict(growth_steps=0), 'growth_steps must be a positive integer'),
])
def test_bad_rules_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        LossScaleRule(**fields)


def test_fp16_is_a_precision_and_others_are_refused():
    assert TrainConfig(num_steps=1, precision='fp16').precision == 'fp16'
    with pytest.raises(UserError, match='fp32, bf16, bf16_activations, fp16'):
        TrainConfig(num_steps=1, precision='fp8')


# -- the graph version, in the trainer ------------------------------------------------------------
class GradientFactor:
    """A builder factory whose FC layers' outputs pass through an identity whose gradient is
    multiplied by a fed factor (default 1): an infinite factor makes every gradient non-finite, the
    loss not."""

    def __init__(self):
        self.factor = None

    def __call__(self, images, phase_train, **options):
        outer = self

        class Builder(ConvNetBuilder):
            def _emit_affine(self, x, kernel, bias):
                y = super()._emit_affine(x, kernel, bias)
                if outer.factor is None:
                    outer.factor = tf.placeholder_with_default(tf.constant(1.0), [],
                                                               'grad_factor')

                @tf.custom_gradient
                def identity(t):
                    return tf.identity(t), lambda dy: dy * outer.factor
                return identity(y)
        return Builder(images, phase_train, **options)


class Script(TrainHook):
    """Feeds the gradient factor of a scripted step (None: nothing fed) and records, around each
    step, every variable's value, whether the scaled gradients were finite and the loss scale's
    state after the step."""

    def __init__(self, factor, script):
        self.factor, self.script = factor, script
        self.finite, self.states, self.used, self.changed = [], [], [], []

    def begin(self, trainer):
        self.trainer = trainer
        self.watched = {v.op.name: v for v in tf.global_variables()
                        if not v.op.name.startswith(('loss_scaling/', 'global_step'))}
        self.scale = trainer.loss_scale.scale_variable
        self.good = trainer.loss_scale.good_steps_variable

    def after_create_session(self, session, step):
        self.session = session

    def before_step(self, step):
        self.before = self.session.run(self.watched)
        value = self.script[step]
        return {} if value is None else {self.factor.factor: value}

    def fetches(self):
        return {'finite': self.trainer.gradients_finite, 'used': self.trainer.loss_scale.scale}

    def after_step(self, step, values):
        after = self.session.run(self.watched)
        self.changed.append(sorted(n for n in after
                                   if not np.array_equal(after[n], self.before[n])))
        self.finite.append(bool(values['finite']))
        self.used.append(float(values['used']))
        scale, good = self.session.run([self.scale, self.good])
        self.states.append(LossScaleState(float(scale), int(good)))


def _fp16_run(data, train_dir, rule, script, num_steps, logs=None, checkpoint_every=2000):
    factor = GradientFactor()
    hook = Script(factor, script)
    config = TrainConfig(num_steps=num_steps, batch_size=8, lr_values=[0.01], precision='fp16',
                         loss_scale=rule, display_every=2, summary_every=2,
                         checkpoint_every=checkpoint_every)
    trainer = Trainer(get_model('vc'), DEPS, data, config, train_dir, hooks=[hook],
                      method=MethodBundle(builder_factory=factor),
                      log=(logs.append if logs is not None else lambda line: None))
    return trainer, hook, trainer.run()


INF = float('inf')


def _summaries(train_dir, tag):
    """{step: value} of a scalar in the TensorBoard events of `train_dir`."""
    out = {}
    for name in os.listdir(train_dir):
        if name.startswith('events.out.tfevents'):
            for event in tf.train.summary_iterator(os.path.join(train_dir, name)):
                for value in event.summary.value:
                    if value.tag == tag:
                        out[event.step] = value.simple_value
    return out


def test_scripted_steps_follow_the_rule_and_skipped_steps_change_nothing(synthetic_dir,
                                                                           tmp_path):
    rule = LossScaleRule(initial=8.0, growth_steps=3)
    script = [1.0, 1.0, 1.0, INF, 1.0, 1.0, INF, INF, 1.0, 1.0]
    logs = []
    trainer, hook, result = _fp16_run(synthetic_dir, str(tmp_path / 'run'), rule, script,
                                      len(script), logs)
    flags = [value != INF for value in script]
    assert result.step == len(script) and hook.finite == flags
    expected = replay(rule, flags)
    assert hook.states == expected
    assert [s.scale for s in expected] == [8, 8, 16, 8, 8, 8, 4, 2, 2, 2]
    assert hook.used == [8.0] + [s.scale for s in expected[:-1]]
    everything = sorted(hook.watched)
    kernels = [n for n in everything if n.endswith('kernel')]
    moving = [n for n in everything if 'moving_' in n]
    momentum = [n for n in everything if n.endswith('/Momentum')]
    assert len(kernels) == 15 and len(moving) == 26 and len(momentum) > 15
    for finite, changed in zip(flags, hook.changed):
        if finite:   # every kernel, its momentum and every BN statistic moved
            assert set(kernels + moving + [k + '/Momentum' for k in kernels]) <= set(changed)
        else:
            assert changed == []
    skips = [line for line in logs if 'update skipped' in line]
    assert skips == ['step 4: non-finite fp16 gradients at loss scale 16: update skipped, loss '
                     'scale 8 from the next step',
                     'step 7: non-finite fp16 gradients at loss scale 8: update skipped, loss '
                     'scale 4 from the next step',
                     'step 8: non-finite fp16 gradients at loss scale 4: update skipped, loss '
                     'scale 2 from the next step']
    assert [l.split('  ')[-1] for l in logs if l.startswith('step 2/') or
            l.startswith('step 10/')] == ['loss scale 8', 'loss scale 2']
    assert _summaries(str(tmp_path / 'run'), 'loss_scale') == {2: 8, 4: 16, 6: 8, 8: 4, 10: 2}
    assert all(np.isfinite(w).all() for w in result.weights.values())


def test_a_real_float16_overflow_is_skipped_until_the_scale_fits(synthetic_dir, tmp_path):
    """No injected factor: at a scale of 2**100 the gradients overflow float16 (max 65504) in the
    convolutions' backward pass, though the scaled loss is finite in float32; the scale falls by
    2**10 a step until they fit."""
    rule = LossScaleRule(initial=2.0 ** 100, growth_steps=1000, factor=2.0 ** 10)
    trainer, hook, result = _fp16_run(synthetic_dir, str(tmp_path / 'run'), rule, [None] * 12, 12)
    assert hook.finite[0] is False and hook.changed[0] == []
    first_finite = hook.finite.index(True)
    assert 3 <= first_finite <= 10, hook.used   # measured: at 2**10, after 2**100 ... 2**20
    assert hook.used[first_finite] <= 2.0 ** 30
    assert hook.states == replay(rule, hook.finite)
    assert all(hook.finite[first_finite:]) and all(hook.changed[first_finite:])


def test_non_finite_gradients_at_the_floor_stop_the_run(synthetic_dir, tmp_path):
    rule = LossScaleRule(initial=4.0, growth_steps=100)
    logs = []
    with pytest.raises(UserError) as error:
        _fp16_run(synthetic_dir, str(tmp_path / 'run'), rule, [1.0, INF, INF, INF, 1.0], 5, logs)
    message = str(error.value)
    assert message.startswith('the gradients stayed non-finite (NaN or Inf) with the fp16 loss '
                              'scale at its floor of 1 ')
    assert 'at step 4 ' in message and 'training diverged' in message
    assert sum('update skipped' in line for line in logs) == 2


def test_a_resumed_run_continues_the_scale_and_the_weights(synthetic_dir, tmp_path):
    rule = LossScaleRule(initial=8.0, growth_steps=3)
    script = [1.0, 1.0, INF, 1.0, 1.0, 1.0, 1.0, 1.0]
    flags = [value != INF for value in script]
    _, whole, straight = _fp16_run(synthetic_dir, str(tmp_path / 'straight'), rule, script, 8)
    run = str(tmp_path / 'resumed')
    _, first, _ = _fp16_run(synthetic_dir, run, rule, script, 4, checkpoint_every=4)
    logs = []
    _, second, resumed = _fp16_run(synthetic_dir, run, rule, script, 8, logs)
    assert 'resumed from %s at step 4' % run in logs
    assert first.states + second.states == whole.states == replay(rule, flags)
    assert second.states == [LossScaleState(4.0, 2), LossScaleState(8.0, 0),
                             LossScaleState(8.0, 1), LossScaleState(8.0, 2)]
    for name, value in straight.weights.items():
        np.testing.assert_array_equal(resumed.weights[name], value, err_msg=name)


def test_the_driver_trains_in_fp16_and_records_it(synthetic_dir, tmp_path):
    """`--precision fp16` through AOFP's driver on the CPU: the run trains (float16 convolutions
    run on the CPU too), its progress lines show the loss scale, run.json records the precision,
    and the file evaluates."""
    aofp = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
    out = run_script(aofp, ['train', '--preset', 'smoke', '--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8',
                            '--max_epochs', '0.5', '--batch_size', '16', '--precision', 'fp16',
                            '--data_dir', synthetic_dir], tmp_path).stdout
    steps = [line for line in out.splitlines() if line.startswith('step 20/20 ')]
    assert len(steps) == 1 and steps[0].endswith('  loss scale 32768'), out[-2000:]
    record = json.loads((tmp_path / 'run.json').read_text())
    assert record['stages']['train']['settings']['precision'] == 'fp16'
    out = run_script(aofp, ['eval', 'vc_scratch_savedweights.hdf5', '--data_dir', synthetic_dir],
                     tmp_path).stdout
    assert 'top1' in out
