"""Training: the loss goes down, LR schedule, gradient doubling, resume, NaN handling, hdf5 output."""

import os

import numpy as np
import pytest

from tf_benchmarks.files import hdf5_io
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models.registry import get_model
import tensorflow.compat.v1 as tf
from tf_benchmarks.engine.train_config import TrainConfig
from tf_benchmarks.engine.hooks import TrainHook
from tf_benchmarks.engine.method import MethodBundle
from tf_benchmarks.engine.trainer import Trainer, learning_rate

TINY_VC = [8, 8, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32, 32]


class LossRecorder(TrainHook):
    def __init__(self):
        self.losses = []

    def begin(self, trainer):
        self.loss = trainer.cross_entropy

    def fetches(self):
        return {'loss': self.loss}

    def after_step(self, step, values):
        self.losses.append(float(values['loss']))

    def state(self):
        return {'n': len(self.losses)}

    def load_state(self, state):
        self.restored = state


def test_a_few_steps_lower_the_loss(synthetic_dir, tmp_path):
    recorder = LossRecorder()
    config = TrainConfig(num_steps=100, batch_size=32, lr_values=[0.01], display_every=50)
    result = Trainer(get_model('vc'), TINY_VC, synthetic_dir, config, str(tmp_path / 'run'),
                     hooks=[recorder]).run()
    first, last = np.mean(recorder.losses[:20]), np.mean(recorder.losses[-20:])
    assert last < first - 0.1, (first, last)
    assert result.step == 100
    assert set(result.weights) == set(get_model('vc').trace(TINY_VC).variables)
    assert os.path.exists(tmp_path / 'run' / 'ckpt-100' / 'state.json')
    assert any(n.startswith('events.out.tfevents') for n in os.listdir(tmp_path / 'run'))


def test_resume_continues_from_the_checkpoint(synthetic_dir, tmp_path):
    run = str(tmp_path / 'run')
    config = TrainConfig(num_steps=6, batch_size=16, lr_values=[0.01], snapshot_every=3)
    first = Trainer(get_model('vc'), [4] * 13, synthetic_dir, config, run,
                    hooks=[LossRecorder()]).run()
    assert sorted(n for n in os.listdir(run) if n.endswith('.hdf5')) == ['ckpt_step_3.hdf5',
                                                                         'ckpt_step_6.hdf5']
    snapshot = hdf5_io.read_hdf5(os.path.join(run, 'ckpt_step_6.hdf5'))
    assert snapshot.deps == (4,) * 13
    for name, value in first.weights.items():
        np.testing.assert_array_equal(snapshot.weights[name], value)
    recorder = LossRecorder()
    logs = []
    config.num_steps = 9
    second = Trainer(get_model('vc'), [4] * 13, synthetic_dir, config, run, hooks=[recorder],
                     log=logs.append).run()
    assert second.step == 9 and len(recorder.losses) == 3
    assert recorder.restored == {'n': 6}
    assert 'resumed from %s at step 6' % run in logs


def test_learning_rate_schedule_with_warmup():
    config = TrainConfig(num_steps=10, lr_values=[0.05, 0.005, 0.0005], lr_boundaries=[100, 200],
                         warmup_steps=10)
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        lr = learning_rate(step, config)
        with tf.Session() as sess:
            values = [sess.run(lr, {step: s}) for s in (0, 5, 10, 100, 101, 200, 201, 10 ** 6)]
    np.testing.assert_allclose(values, [0, 0.025, 0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005],
                               rtol=1e-6)


def test_gradient_doubling_and_handler_see_the_right_gradients(synthetic_dir, tmp_path):
    seen = {}

    def handler(grads_and_vars):
        seen.update({v.op.name: g for g, v in grads_and_vars})
        return grads_and_vars

    config = TrainConfig(num_steps=1, batch_size=8, lr_values=[0.0])
    trainer = Trainer(get_model('vc'), [4] * 13, synthetic_dir, config, str(tmp_path / 'r'),
                      method=MethodBundle(grad_handler=handler))
    assert 'v0/cg/affine1/dense/bias' in seen
    assert seen['v0/cg/affine1/dense/bias'].op.type == 'Mul'        # doubled
    assert seen['v0/cg/conv0/batchnorm0/beta'].op.type == 'Mul'     # doubled
    assert seen['v0/cg/conv0/batchnorm0/gamma'].op.type != 'Mul'
    l2 = [op for op in trainer.graph.get_operations() if op.type == 'L2Loss']
    assert len(l2) == 15  # 13 conv kernels + 2 dense kernels, no vectors
    # the weight decay is exactly the gradient of cross-entropy + wd * sum(l2_loss(kernels))
    with trainer.graph.as_default():
        names = ['v0/cg/conv3/conv2d/kernel', 'v0/cg/conv3/batchnorm3/gamma',
                 'v0/cg/affine1/dense/bias']
        variables = [trainer.key_variables[n] for n in names]
        reference = tf.gradients(trainer.loss, variables)
        with tf.Session() as sess:
            sess.run(trainer.init_op)
            sess.run(tf.local_variables_initializer())
            values = sess.run([seen[n] for n in names] + reference, {trainer.images: np.ones(
                trainer.images.shape.as_list(), np.float32), trainer.labels: np.arange(8) % 10})
    np.testing.assert_allclose(values[0], values[3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(values[1], values[4], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(values[2], 2 * values[5], rtol=1e-5, atol=1e-7)


def test_nan_loss_stops_with_a_clear_error(synthetic_dir, tmp_path):
    config = TrainConfig(num_steps=50, batch_size=16, lr_values=[1e30], display_every=1000)
    with pytest.raises(UserError, match='loss became nan'):
        Trainer(get_model('vc'), [4] * 13, synthetic_dir, config, str(tmp_path / 'r')).run()


def test_search_state_round_trips_through_a_real_checkpoint(synthetic_dir, tmp_path):
    from aofp.pipeline import search_method
    from aofp.search import AofpSearch
    from aofp.search_hook import SearchHook
    deps, run = [4] * 13, str(tmp_path / 'run')
    config = TrainConfig(num_steps=8, batch_size=16, lr_values=[0.001], checkpoint_every=4)

    def search_run():
        search = AofpSearch([np.ones(d, np.float32) for d in deps], 3, 10.0, 0, lambda w: 0.0, 1.0)
        hook = SearchHook(search, range(13), str(tmp_path / 'bds.txt'), 0, 0)
        Trainer(get_model('vc'), deps, synthetic_dir, config, run,
                method=search_method(range(13), hook)).run()
        return search
    first = search_run()
    assert first.num_moves > 0
    second = search_run()   # restores the step-8 checkpoint and takes no step
    assert second.state() == first.state() and second.widths == first.widths
