"""Single-device training in `tf.compat.v1` graph mode: Nesterov momentum, piecewise LR by steps with
optional linear warmup, L2 on a chosen set of variables, keyword gradient doubling, a hook that may
rewrite the (gradient, variable) list, BN moving averages, TensorBoard summaries, progress lines,
checkpoints that resume, and hdf5 snapshots in the originals' format."""

import dataclasses
import json
import os
import re
import shutil
import signal
import time
from typing import Callable, Sequence

import numpy as np

from tf_benchmarks import session as tf_session
from tf_benchmarks.session import tf
from tf_benchmarks import hdf5_io, input_pipeline
from tf_benchmarks.convnet_builder import ConvNetBuilder
from tf_benchmarks.errors import UserError, cannot_write_message
from tf_benchmarks.faults import crash_point
from tf_benchmarks.logs import LogBook, ProgressMeter

_CKPT_DIR = re.compile(r'^ckpt-(\d+)$')


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
    cosine: bool = False                       # cosine decay from lr_values[0] to 0 (no steps)
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

    def finished(self):
        """True when the hook has ended training (checked on resume, so a finished run takes no
        further step)."""
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
    """piecewise_constant semantics: values[k] while boundaries[k-1] < step <= boundaries[k]; or,
    with `cosine`, values[0] * (1 + cos(pi * step / num_steps)) / 2."""
    step = tf.cast(global_step, tf.int64)
    values = tf.constant([float(v) for v in config.lr_values], tf.float32)
    if config.cosine:
        progress = tf.minimum(tf.cast(step, tf.float32) / float(max(config.num_steps, 1)), 1.0)
        lr = config.lr_values[0] * 0.5 * (1.0 + tf.cos(np.pi * progress))
    elif config.lr_boundaries:
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

    `data` is a data directory (its training tfrecords are read) or a source with `num_examples`,
    `batches(batch_size, augmentation, shuffle, seed)` and `initialize(session, step)` (see
    input_pipeline). `init_weights` (name -> array, read from `init_source`) initialize the key
    variables unless `train_dir` holds a checkpoint to resume from; they must match the model
    exactly unless `partial_init`. `logs` is the run's LogBook, rewound on resume. `grad_handler(grads_and_vars) -> grads_and_vars` runs after gradient doubling and
    before `apply_gradients`. `builder_factory(images, phase_train, conv_dtype)` returns the
    ConvNetBuilder.
    """

    def __init__(self, model, deps, data, config, train_dir, init_weights=None, hooks=(),
                 grad_handler=None, builder_factory=ConvNetBuilder, log=print,
                 init_source='init weights', partial_init=False, logs=None):
        self.model = model
        self.deps = model.check_deps(deps)
        self.config = config
        self.train_dir = train_dir
        self.init_weights = init_weights
        self.init_source = init_source
        self.partial_init = partial_init
        self.logs = logs or LogBook()
        self.hooks = list(hooks)
        self.grad_handler = grad_handler
        self.builder_factory = builder_factory
        self.log = log
        self.data = input_pipeline.RecordData(data) if isinstance(data, str) else data
        self.num_examples = self.data.num_examples
        if self.num_examples < config.batch_size:
            raise UserError('%s has %d images, fewer than one batch of %d'
                            % (self.data.description, self.num_examples, config.batch_size))
        # Resume order: the newest complete checkpoint in train_dir, else init_weights, else random.
        # The logs go back to where that checkpoint (or the stage) left them before anything new
        # is written, graph construction included.
        self._checkpoint = self._find_checkpoint()
        if self._checkpoint:
            self.logs.rewind(self._checkpoint[1]['logs'])
        else:
            self.logs.rewind_to_stage_start()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self._build()
            for hook in self.hooks:
                hook.begin(self)
            self.summary_op = tf.summary.merge_all()
            self.saver = tf.train.Saver(max_to_keep=None, save_relative_paths=True)
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
    # A checkpoint is one directory, ckpt-<step>/, holding the TF variables (weights, optimizer
    # slots, global step, BN statistics) and state.json (the hooks' state, e.g. AOFP's search, and
    # the sizes of the run's log files). It is written under a temporary name and renamed, so it is
    # whole or absent. The input stream's position is the global step (see input_pipeline).
    def checkpoints(self):
        """{step: directory} of the complete checkpoints in train_dir."""
        found = {}
        if os.path.isdir(self.train_dir):
            for name in os.listdir(self.train_dir):
                match = _CKPT_DIR.match(name)
                if match:
                    found[int(match.group(1))] = os.path.join(self.train_dir, name)
        return found

    def save_checkpoint(self, session, step):
        final = os.path.join(self.train_dir, 'ckpt-%d' % step)
        if os.path.isdir(final):
            return
        tmp = os.path.join(self.train_dir, '.ckpt-%d.tmp-%d' % (step, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            os.makedirs(tmp)
            self.saver.save(session, os.path.join(tmp, 'model'), write_meta_graph=False,
                            write_state=False)
            state = {'step': step, 'hooks': [h.state() for h in self.hooks],
                     'logs': self.logs.sizes()}
            with open(os.path.join(tmp, 'state.json'), 'w') as f:
                json.dump(state, f)
            crash_point('checkpoint_write')
            os.replace(tmp, final)
        except tf.errors.OpError as e:
            raise UserError(cannot_write_message(final, _write_failure(e.message)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        found = self.checkpoints()
        for old in sorted(found)[:-2]:
            shutil.rmtree(found[old], ignore_errors=True)

    def _find_checkpoint(self):
        """(directory, state) of the newest checkpoint, or None; half-written ones are removed."""
        if os.path.isdir(self.train_dir):
            for name in os.listdir(self.train_dir):
                if name.startswith('.ckpt-'):
                    shutil.rmtree(os.path.join(self.train_dir, name), ignore_errors=True)
        found = self.checkpoints()
        if not found:
            return None
        directory = found[max(found)]
        try:
            with open(os.path.join(directory, 'state.json')) as f:
                state = json.load(f)
            hook_states, _ = state['hooks'], state['logs']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError('checkpoint %s has no readable state (%s); it was not written by this '
                            'version. Remove that directory to resume from an older checkpoint, or '
                            'restart the stage with --restart_from' % (directory, e))
        if len(hook_states) != len(self.hooks):
            raise UserError('checkpoint %s holds the state of %d hooks, this run has %d; restart '
                            'the stage with --restart_from' % (directory, len(hook_states),
                                                                len(self.hooks)))
        return directory, state

    def _restore(self, session):
        """Restore the checkpoint found at construction; returns its step, or None."""
        if self._checkpoint is None:
            return None
        directory, state = self._checkpoint
        try:
            self.saver.restore(session, os.path.join(directory, 'model'))
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
                tf.errors.DataLossError) as e:
            raise UserError('checkpoint %s does not fit this model (%s); restart the stage with '
                            '--restart_from' % (directory, e.message.splitlines()[0]))
        step = int(session.run(self.global_step))
        for hook, hook_state in zip(self.hooks, state['hooks']):
            if hook.state() is not None and hook_state is None:
                raise UserError('checkpoint %s lacks the state of %s; restart the stage with '
                                '--restart_from' % (directory, type(hook).__name__))
            if hook_state is not None:
                hook.load_state(hook_state)
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
                    report = load_weights(sess, self.key_variables, self.init_weights,
                                          self.init_source, allow_missing=self.partial_init,
                                          allow_unexpected=self.partial_init)
                    self.log('init weights from %s: %s' % (self.init_source, report.summary()))
                step = 0
            else:
                self.log('resumed from %s at step %d' % (self.train_dir, step))
            self.data.initialize(sess, step)
            for hook in self.hooks:
                hook.after_create_session(sess, step)
            writer = self.writer = tf.summary.FileWriter(self.train_dir, self.graph)
            try:
                with _signals_between_steps() as signals:
                    step, stopped = self._loop(sess, step, writer, signals)
            except tf.errors.DataLossError as e:
                raise UserError('corrupt training record in %s (%s); re-create the data with '
                                'datasets/download_and_convert_cifar10.py --overwrite'
                                % (self.data.description, e.message.splitlines()[0]))
            finally:
                writer.close()
            self.save_checkpoint(sess, step)
            return TrainResult(self.weights(sess), step, stopped)

    def _loop(self, sess, step, writer, signals):
        c = self.config
        meter = ProgressMeter(c.num_steps, c.batch_size, step)
        base = {'train': self.train_op, 'loss': self.cross_entropy, 'top1': self.top1,
                'lr': self.learning_rate}
        last_ckpt_time = time.time()
        stopped = any(hook.finished() for hook in self.hooks)
        while step < c.num_steps and not stopped:
            fetches = dict(base)
            feed = {}
            for i, hook in enumerate(self.hooks):
                feed.update(hook.before_step(step))
                fetches['hook%d' % i] = hook.fetches()
            if c.summary_every and (step + 1) % c.summary_every == 0:
                fetches['summary'] = self.summary_op
            values = sess.run(fetches, feed_dict=feed)
            if not np.isfinite(values['loss']):
                last = self.checkpoints()
                raise UserError('the loss became %s at step %d (learning rate %g): training '
                                'diverged. Lower the learning rate or check the data; %s'
                                % (values['loss'], step + 1, values['lr'],
                                   'the last good checkpoint, %s, is kept' % last[max(last)]
                                   if last else 'no checkpoint was written yet'))
            step += 1
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
            crash_point('train_step')
            if signals.received:
                self.save_checkpoint(sess, step)
                self.log('stopped by %s: checkpoint saved at step %d in %s; run the same command '
                         'to continue' % (signals.received, step, self.train_dir))
                raise KeyboardInterrupt
        return step, stopped


def _write_failure(message):
    """The system's reason ('File too large', 'No space left on device', ...) in a TF save error."""
    for line in message.splitlines():
        match = re.search(r'; ([A-Z][A-Za-z -]+)$', line.strip())
        if match:
            return match.group(1)
    return message.splitlines()[0]


class _signals_between_steps:
    """SIGINT and SIGTERM only set a flag while training runs; the loop checks it between steps,
    saves a checkpoint and stops, so no step and no search decision is cut in half."""

    def __enter__(self):
        self.received = None
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_to_file(model, deps, data, config, train_dir, out_file, logs=None, log=print):
    """Train `model` at `deps` from scratch into `out_file` (hdf5 with deps), resuming from the
    checkpoints in `train_dir`."""
    trainer = Trainer(model, deps, data, config, train_dir, logs=logs, log=log)
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


def load_weights(session, variables, weights, source, allow_missing=False, allow_unexpected=True):
    """Assign `weights` (name -> array) to `variables` (name -> tf.Variable) by normalized name.

    Raises a UserError on a shape mismatch, on missing variables unless allow_missing, and on
    entries the model does not have unless allow_unexpected.
    """
    shapes = {name: tuple(var.shape.as_list()) for name, var in variables.items()}
    assignments, report = hdf5_io.match_weights(shapes, weights)
    hdf5_io.check_report(report, source, allow_missing, allow_unexpected)
    loaders = _loaders(session.graph, variables)
    session.run([loaders[name][1] for name in assignments],
                {loaders[name][0]: value for name, value in assignments.items()})
    return report


def _loaders(graph, variables):
    """{name: (placeholder, assign op)} for `variables`, made once per graph: one session.run loads
    every weight (Variable.load would run the graph once per variable)."""
    cache = graph.get_collection_ref('pruning_weight_loaders')
    if not cache:
        cache.append({})
    loaders = cache[0]
    with graph.as_default():
        for name, var in variables.items():
            if name not in loaders:
                value = tf.placeholder(var.dtype.base_dtype, var.shape)
                loaders[name] = (value, tf.assign(var, value))
    return loaders
