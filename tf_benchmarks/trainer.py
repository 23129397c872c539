"""Single-device training in `tf.compat.v1` graph mode: Nesterov momentum, piecewise LR by steps with
optional linear warmup, L2 on a chosen set of variables, keyword gradient doubling, a hook that may
rewrite the (gradient, variable) list, BN moving averages, TensorBoard summaries, progress lines,
checkpoints that resume, and hdf5 snapshots in the originals' format."""

import dataclasses
import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from tf_benchmarks import session as tf_session
from tf_benchmarks.session import tf
from tf_benchmarks import hdf5_io, input_pipeline
from tf_benchmarks.convnet_builder import ConvNetBuilder
from tf_benchmarks.errors import UserError
from tf_benchmarks.logs import ProgressMeter


def kernels_only(name, shape):
    """The AOFP L2 filter: only rank-2 and rank-4 variables (conv and FC kernels)."""
    return len(shape) in (2, 4)


@dataclasses.dataclass
class TrainConfig:
    num_steps: int
    batch_size: int = 64
    lr_values: Sequence[float] = (0.1,)
    lr_boundaries: Sequence[int] = ()          # in steps; len(lr_values) == len(lr_boundaries) + 1
    warmup_steps: int = 0                      # linear warmup from 0 to lr_values[0]
    momentum: float = 0.9
    weight_decay: float = 1e-4
    l2_filter: Callable = kernels_only         # (name, shape) -> bool: which variables get L2
    double_gradient_keywords: Sequence[str] = ('bias', 'beta')
    augmentation: bool = True
    shuffle: bool = True
    precision: str = 'fp32'                    # 'bf16': bfloat16 convolutions, float32 variables
    display_every: int = 100
    summary_every: int = 100
    checkpoint_every: int = 2000               # steps between resumable checkpoints
    checkpoint_secs: float = 600.0             # ... or seconds, whichever comes first
    snapshot_every: int = 0                    # steps between ckpt_step_<gs>.hdf5 snapshots
    seed: int = 1234
    intra_threads: int = 0
    inter_threads: int = 0

    def __post_init__(self):
        if len(self.lr_values) != len(self.lr_boundaries) + 1:
            raise ValueError('need one more LR value than boundaries')
        if self.precision not in ('fp32', 'bf16'):
            raise UserError('precision must be fp32 or bf16, got %r' % (self.precision,))


class TrainHook:
    """Per-step extension of the training loop (AOFP's search runs as one)."""

    def begin(self, trainer):
        """The graph is built (inside `trainer.graph`); create extra ops and summaries here."""

    def after_create_session(self, session, step):
        """Variables are initialized or restored; `step` is the global step."""

    def before_step(self, step):
        """Extra feed_dict entries for this step."""
        return {}

    def fetches(self):
        """Extra tensors fetched with every training step."""
        return {}

    def after_step(self, step, values):
        """Called with the fetched extra values; return True to end training after this step."""
        return False

    def state(self):
        """JSON-serializable state, saved with every checkpoint."""
        return None

    def load_state(self, state):
        """Restore what `state()` returned when resuming from a checkpoint."""

    def status(self):
        """Text appended to the progress line (e.g. current widths)."""
        return ''

    def masks(self):
        """Masks {layer: 0/1 vector} to store in snapshots, or None."""
        return None


def learning_rate(global_step, config):
    """piecewise_constant semantics: values[k] while boundaries[k-1] < step <= boundaries[k]."""
    step = tf.cast(global_step, tf.int64)
    values = tf.constant([float(v) for v in config.lr_values], tf.float32)
    if config.lr_boundaries:
        passed = tf.cast(step > tf.constant(list(config.lr_boundaries), tf.int64), tf.int32)
        lr = tf.gather(values, tf.reduce_sum(passed))
    else:
        lr = values[0]
    if config.warmup_steps:
        warm = config.lr_values[0] * tf.cast(step, tf.float32) / float(config.warmup_steps)
        lr = tf.where(step < config.warmup_steps, warm, lr)
    return lr


def double_keyword_gradients(grads_and_vars, keywords):
    """Caffe-style lr_mult 2: double the gradient of variables whose name contains a keyword."""
    out = []
    for grad, var in grads_and_vars:
        if grad is not None and any(k in var.op.name for k in keywords):
            grad = 2.0 * grad
        out.append((grad, var))
    return out


@dataclasses.dataclass
class TrainResult:
    weights: dict
    step: int
    stopped_by_hook: bool


class Trainer:
    """Builds the training graph of `model` at widths `deps` and runs it.

    `data` is a data directory (its training tfrecords are read) or a source with `num_examples` and
    `batches(batch_size, augmentation, shuffle, seed)` (see input_pipeline). `init_weights`
    (name -> array) initialize the key variables unless `train_dir` holds a checkpoint to resume
    from. `grad_handler(grads_and_vars) -> grads_and_vars` runs after gradient doubling and
    before `apply_gradients`. `builder_factory(images, phase_train, conv_dtype)` returns the
    ConvNetBuilder.
    """

    def __init__(self, model, deps, data, config, train_dir, init_weights=None, hooks=(),
                 grad_handler=None, builder_factory=ConvNetBuilder, log=print):
        self.model = model
        self.deps = model.check_deps(deps)
        self.config = config
        self.train_dir = train_dir
        self.init_weights = init_weights
        self.hooks = list(hooks)
        self.grad_handler = grad_handler
        self.builder_factory = builder_factory
        self.log = log
        self.data = input_pipeline.RecordData(data) if isinstance(data, str) else data
        self.num_examples = self.data.num_examples
        if self.num_examples < config.batch_size:
            raise UserError('%s has %d images, fewer than one batch of %d'
                            % (self.data.description, self.num_examples, config.batch_size))
        self.graph = tf.Graph()
        with self.graph.as_default():
            self._build()
            for hook in self.hooks:
                hook.begin(self)
            self.summary_op = tf.summary.merge_all()
            self.saver = tf.train.Saver(max_to_keep=2)
            self.init_op = tf.global_variables_initializer()

    # -- graph ----------------------------------------------------------------------------------
    def _build(self):
        c = self.config
        tf.set_random_seed(c.seed)
        self.images, self.labels = self.data.batches(c.batch_size, c.augmentation, c.shuffle, c.seed)
        conv_dtype = tf.bfloat16 if c.precision == 'bf16' else tf.float32
        self.builder = self.builder_factory(self.images, phase_train=True, conv_dtype=conv_dtype)
        self.logits = self.model.build(self.builder, self.deps).tensor
        self.trace = self.builder.trace
        self.cross_entropy = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=self.labels, logits=self.logits))
        trainable = tf.trainable_variables()
        l2_vars = [v for v in trainable if c.l2_filter(v.op.name, v.shape.as_list())]
        # L2 as in the loss, wd * sum(l2_loss(v)), but added to the gradients directly (the same
        # gradient, wd * v) so the penalty itself is only computed for the summaries.
        self.l2_penalty = (c.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in l2_vars])
                           if c.weight_decay and l2_vars else tf.constant(0.0))
        self.loss = self.cross_entropy + self.l2_penalty
        self.global_step = tf.train.get_or_create_global_step()
        self.learning_rate = learning_rate(self.global_step, c)
        optimizer = tf.train.MomentumOptimizer(self.learning_rate, c.momentum, use_nesterov=True)
        grads_and_vars = optimizer.compute_gradients(self.cross_entropy, var_list=trainable)
        decayed = {v.op.name for v in l2_vars} if c.weight_decay else set()
        grads_and_vars = [(g + c.weight_decay * v if v.op.name in decayed and g is not None else g,
                           v) for g, v in grads_and_vars]
        grads_and_vars = double_keyword_gradients(grads_and_vars, c.double_gradient_keywords)
        if self.grad_handler is not None:
            grads_and_vars = self.grad_handler(grads_and_vars)
        apply = optimizer.apply_gradients(grads_and_vars, global_step=self.global_step)
        self.train_op = tf.group(apply, *self.builder.update_ops)
        self.top1 = tf.reduce_mean(tf.cast(tf.nn.in_top_k(self.logits, self.labels, 1), tf.float32))
        self.key_variables = key_variables(self.trace)
        for name, tensor in (('loss', self.cross_entropy), ('total_loss', self.loss),
                             ('top1', self.top1), ('learning_rate', self.learning_rate)):
            tf.summary.scalar(name, tensor)

    # -- checkpoints ----------------------------------------------------------------------------
    def _state_path(self, step):
        return os.path.join(self.train_dir, 'hook_state-%d.json' % step)

    def save_checkpoint(self, session, step):
        """Hook states first (atomically), then the TF checkpoint that makes them current."""
        os.makedirs(self.train_dir, exist_ok=True)
        states = [h.state() for h in self.hooks]
        path = self._state_path(step)
        tmp = hdf5_io.atomic_path(path)
        with open(tmp, 'w') as f:
            json.dump(states, f)
        os.replace(tmp, path)
        self.saver.save(session, os.path.join(self.train_dir, 'model.ckpt'), global_step=step)
        kept = {int(p.rsplit('-', 1)[1]) for p in self.saver.last_checkpoints}
        for name in os.listdir(self.train_dir):
            if name.startswith('hook_state-') and name.endswith('.json'):
                if int(name[len('hook_state-'):-5]) not in kept:
                    os.remove(os.path.join(self.train_dir, name))

    def _restore(self, session):
        latest = tf.train.latest_checkpoint(self.train_dir) if os.path.isdir(self.train_dir) else None
        if latest is None:
            return None
        self.saver.restore(session, latest)
        step = int(session.run(self.global_step))
        state_path = self._state_path(step)
        if os.path.exists(state_path):
            with open(state_path) as f:
                for hook, state in zip(self.hooks, json.load(f)):
                    if state is not None:
                        hook.load_state(state)
        return step

    def add_scalars(self, step, values):
        """Write Python-side scalars {tag: value} to the run's TensorBoard events."""
        summary = tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v))
                                    for k, v in values.items()])
        self.writer.add_summary(summary, step)

    def weights(self, session):
        return dict(zip(self.key_variables, session.run(list(self.key_variables.values()))))

    def snapshot(self, session, step):
        """Write ckpt_step_<step>.hdf5 (key variables, deps and any hook masks) in train_dir."""
        masks = {}
        for hook in self.hooks:
            masks.update(hook.masks() or {})
        hdf5_io.save_hdf5(os.path.join(self.train_dir, 'ckpt_step_%d.hdf5' % step),
                          self.weights(session), self.deps, masks)

    # -- loop -----------------------------------------------------------------------------------
    def run(self):
        c = self.config
        os.makedirs(self.train_dir, exist_ok=True)
        config = tf_session.session_config(c.intra_threads, c.inter_threads)
        with tf.Session(graph=self.graph, config=config) as sess:
            step = self._restore(sess)
            sess.run(tf.local_variables_initializer())
            if step is None:
                sess.run(self.init_op)
                if self.init_weights:
                    report = load_weights(sess, self.key_variables, self.init_weights, 'init weights',
                                          allow_missing=True)
                    self.log('init weights: ' + report.summary())
                step = 0
            else:
                self.log('resumed from %s at step %d' % (self.train_dir, step))
            for hook in self.hooks:
                hook.after_create_session(sess, step)
            writer = self.writer = tf.summary.FileWriter(self.train_dir, self.graph)
            try:
                step, stopped = self._loop(sess, step, writer)
            except tf.errors.DataLossError as e:
                raise UserError('corrupt training record in %s (%s); re-create the data with '
                                'datasets/download_and_convert_cifar10.py --overwrite'
                                % (self.data.description, e.message.splitlines()[0]))
            except KeyboardInterrupt:
                step = int(sess.run(self.global_step))
                self.save_checkpoint(sess, step)
                self.log('interrupted: checkpoint saved at step %d in %s; run the same command to '
                         'continue' % (step, self.train_dir))
                raise
            finally:
                writer.close()
            self.save_checkpoint(sess, step)
            return TrainResult(self.weights(sess), step, stopped)

    def _loop(self, sess, step, writer):
        c = self.config
        meter = ProgressMeter(c.num_steps, c.batch_size, step)
        base = {'train': self.train_op, 'loss': self.cross_entropy, 'top1': self.top1,
                'lr': self.learning_rate}
        last_ckpt_time, stopped = time.time(), False
        while step < c.num_steps and not stopped:
            fetches = dict(base)
            feed = {}
            for i, hook in enumerate(self.hooks):
                feed.update(hook.before_step(step))
                fetches['hook%d' % i] = hook.fetches()
            if c.summary_every and (step + 1) % c.summary_every == 0:
                fetches['summary'] = self.summary_op
            values = sess.run(fetches, feed_dict=feed)
            step += 1
            if not np.isfinite(values['loss']):
                raise UserError('the loss became %s at step %d (learning rate %g): training '
                                'diverged. Lower the learning rate or check the data; the last good '
                                'checkpoint is in %s' % (values['loss'], step, values['lr'],
                                                         self.train_dir))
            for i, hook in enumerate(self.hooks):
                stopped = hook.after_step(step, values['hook%d' % i]) or stopped
            if 'summary' in values:
                writer.add_summary(values['summary'], step)
            if step % c.display_every == 0 or step == c.num_steps or stopped:
                extra = '  '.join(s for s in (h.status() for h in self.hooks) if s)
                self.log(meter.line(step, values['loss'], values['top1'], values['lr'], extra))
            if c.snapshot_every and step % c.snapshot_every == 0:
                self.snapshot(sess, step)
            if (c.checkpoint_every and step % c.checkpoint_every == 0) or \
                    time.time() - last_ckpt_time > c.checkpoint_secs:
                self.save_checkpoint(sess, step)
                last_ckpt_time = time.time()
        return step, stopped


def train_to_file(model, deps, data_dir, make_config, train_dir, out_file, log=print):
    """Train `model` at `deps` from scratch into `out_file` (hdf5 with deps), resuming from the
    checkpoints in `train_dir`; an existing `out_file` is kept and nothing is trained.
    `make_config(num_examples)` returns the TrainConfig for the training split's size."""
    if os.path.exists(out_file):
        log('%s already exists; delete it to train again' % out_file)
        return out_file
    data = input_pipeline.RecordData(data_dir)
    config = make_config(data.num_examples)
    trainer = Trainer(model, deps, data, config, train_dir, log=log)
    log('training %s from scratch: deps %s, %d steps of %d on %d images'
        % (model.name, list(trainer.deps), config.num_steps, config.batch_size,
           trainer.num_examples))
    result = trainer.run()
    hdf5_io.save_hdf5(out_file, result.weights, trainer.deps)
    log('saved %s' % out_file)
    return out_file


def key_variables(trace):
    """The variables saved to hdf5 (trainable ones and BN moving statistics), in creation order."""
    by_name = {v.op.name: v for v in tf.global_variables()}
    return {name: by_name[name] for name in trace.variables}


def load_weights(session, variables, weights, source, allow_missing=False):
    """Assign `weights` (name -> array) to `variables` (name -> tf.Variable) by normalized name.

    Raises a UserError on a shape mismatch (and on missing variables unless allow_missing).
    """
    shapes = {name: tuple(var.shape.as_list()) for name, var in variables.items()}
    assignments, report = hdf5_io.match_weights(shapes, weights)
    hdf5_io.check_report(report, source, allow_missing)
    for name, value in assignments.items():
        variables[name].load(value, session)
    return report
