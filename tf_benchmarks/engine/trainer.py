"""The training graph and loop in `tf.compat.v1` graph mode, on one device or on replicas through
tf.distribute: Nesterov momentum, piecewise LR by steps with optional linear warmup, L2 on a chosen
set of variables, keyword gradient doubling, a method's hooks and gradient handler, BN moving
averages, fp16's dynamic loss scaling, TensorBoard summaries, progress lines, checkpoints that
resume, and hdf5 snapshots in the originals' format."""

import dataclasses
import os
import signal
import time

import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError, corrupt_record_error
from tf_benchmarks.core.faults import crash_point
from tf_benchmarks.data import imagenet_pipeline, sources
from tf_benchmarks.engine import replicas
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.engine.checkpoints import CheckpointDir
from tf_benchmarks.engine.loss_scale import LossScaleState, at_floor, next_state
from tf_benchmarks.engine.loss_scale_graph import GraphLossScale
from tf_benchmarks.engine.method import PLAIN
from tf_benchmarks.engine.weights import key_variables, load_weights, loaders, weights_digest
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network.convnet_builder import variable_name
from tf_benchmarks.runs.logs import LogBook, ProgressMeter

# What the convolutions compute in, by --precision (variables, BN, loss and statistics: float32).
CONV_DTYPES = {'fp32': tf.float32, 'bf16': tf.bfloat16, 'bf16_activations': tf.bfloat16,
               'fp16': tf.float16}
FP16_RANGE = (' (with --precision fp16: a convolution\'s float16 output overflows above 65504; '
              '--precision bf16 or fp32 has float32\'s range)')


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


_name = variable_name


def _momentum_update(var, grad, accum, lr, momentum, nesterov=True):
    """The MomentumOptimizer update of one variable (one copy, under a strategy): accum = momentum
    * accum + grad; var -= lr * (grad + momentum * accum) with Nesterov, else lr * accum."""
    dtype = var.dtype.base_dtype
    lr, momentum = tf.cast(lr, dtype), tf.cast(tf.convert_to_tensor(momentum), dtype)
    if var.dtype == dtype:  # a resource variable: the strategies' copies
        return tf.raw_ops.ResourceApplyMomentum(var=var.handle, accum=accum.handle, lr=lr,
                                                grad=grad, momentum=momentum,
                                                use_nesterov=nesterov)
    return tf.raw_ops.ApplyMomentum(var=var, accum=accum, lr=lr, grad=grad, momentum=momentum,
                                    use_nesterov=nesterov).op


def _moving_average_update(var, value, decay):
    return moving_averages.assign_moving_average(var, value, decay, zero_debias=False)


def _all_finite(tensors):
    """A boolean tensor: no NaN or Inf in any of `tensors` (a cheap reduction per tensor)."""
    checks = [tf.reduce_all(tf.is_finite(tf.convert_to_tensor(t))) for t in tensors]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def double_keyword_gradients(grads_and_vars, keywords):
    """Caffe-style lr_mult 2: double the gradient of variables whose name contains a keyword."""
    out = []
    for grad, var in grads_and_vars:
        if grad is not None and any(k in variable_name(var) for k in keywords):
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
    exactly unless `partial_init`. `logs` is the run's LogBook, rewound on resume.
    `method` (a MethodBundle) gives the builder, the hooks, the gradient handler and the config
    fields of the method; `hooks` are further hooks run after the method's (timers, recorders). The process's `replicas`
    decide the devices; only the chief writes checkpoints, snapshots and summaries.
    """

    def __init__(self, model, deps, data, config, train_dir, init_weights=None, method=PLAIN,
                 hooks=(), log=print, init_source='init weights', partial_init=False, logs=None,
                 input_spec=None, class_names=None):
        self.model = model
        self.deps = model.check_deps(deps)
        self.method = method
        self.config = config = method.configured(config)
        self.train_dir = train_dir
        self.init_weights = init_weights
        self.init_source = init_source
        self.partial_init = partial_init
        self.logs = logs or LogBook()
        self.hooks = list(method.hooks) + list(hooks)
        self.grad_handler = method.grad_handler
        self.builder_factory = method.builder_factory
        self.log = log
        self.input_spec = input_spec  # None: the model's default input
        self.data = sources.training_data(data, input_spec) if isinstance(data, str) else data
        self.class_names = sources.class_names(data) if class_names is None and \
            isinstance(data, str) else class_names  # what the snapshots record
        self.num_logits = getattr(self.data, 'logits', None)  # None: the model's
        self.num_examples = self.data.num_examples
        if self.num_examples < config.batch_size:
            raise UserError('%s has %d images, fewer than one batch of %d'
                            % (self.data.description, self.num_examples, config.batch_size))
        # Resume order: the newest complete checkpoint in train_dir, else init_weights, else random.
        # The logs go back to where that checkpoint (or the stage) left them before anything new
        # is written, graph construction included.
        self.checkpoint_dir = CheckpointDir(train_dir)
        self._checkpoint = self.checkpoint_dir.newest(len(self.hooks))
        if self._checkpoint:
            self.logs.rewind(self._checkpoint[1]['logs'])
        else:
            self.logs.rewind_to_stage_start()
        self.replicas = replicas.current()
        self.graph = tf.Graph()
        with self.graph.as_default(), self.replicas.scope():
            self._build()
            for hook in self.hooks:
                hook.begin(self)
            self.summary_op = tf.summary.merge_all()
            self.saver = tf.train.Saver(max_to_keep=None, save_relative_paths=True)
            self.init_op = tf.global_variables_initializer()

    # -- graph ----------------------------------------------------------------------------------
    # One step is the replica step (below: a slice of the global batch -> loss, gradients, metrics,
    # batch statistics, all averaged over the replicas) followed by the update, which runs once per
    # copy of the variables on the averaged values: the gradient transforms in a fixed order (L2,
    # keyword doubling, the grad_handler, e.g. C-SGD's merge), Nesterov momentum, the BN moving
    # averages, the global step. On one device the strategy is TensorFlow's default one.
    def _build(self):
        c = self.config
        tf.set_random_seed(c.seed)
        strategy = self.replicas.strategy
        self.per_replica_batch = self.replicas.per_replica_batch(c.batch_size)
        # A per-worker source (sharded sets) gives this worker's part of the global batch; the
        # others give the whole global batch on every worker.
        self.local_batch = c.batch_size
        if getattr(self.data, 'per_worker', False):
            self.local_batch = c.batch_size // self.replicas.num_workers
        self.images, self.labels = self.data.batches(self.local_batch, c.augmentation, c.shuffle,
                                                     c.seed)
        self.global_step = tf.train.get_or_create_global_step()
        self.learning_rate = learning_rate(self.global_step, c)
        # fp16: dynamic loss scaling (loss_scale.py); a step with non-finite scaled gradients
        # changes no weight, momentum or moving average, and halves the scale.
        self.loss_scale = GraphLossScale(c.loss_scale) if c.precision == 'fp16' else None
        self._builders = []
        out = strategy.run(self._replica_step, args=(self.images, self.labels))
        builder = self.builder = self._builders[0]
        self.trace = builder.trace
        hook_sizes = [len(h) for h in out['hooks']]
        values = [out['loss'], out['top1']] + out['grads'] + out['statistics'] + \
            [t for h in out['hooks'] for t in h]
        if self.replicas.num_replicas > 1:  # the mean over the replicas, on every replica
            values = strategy.extended.batch_reduce_to(
                tf.distribute.ReduceOp.MEAN, [(v, v) for v in values])
        n_grads, n_stats = len(out['grads']), len(out['statistics'])
        grads = values[2:2 + n_grads]
        statistics = values[2 + n_grads:2 + n_grads + n_stats]
        rest = values[2 + n_grads + n_stats:]
        # Averaged values are the same on every replica: fetch this worker's first copy.
        first = lambda value: strategy.experimental_local_results(value)[0]  # noqa: E731
        self.cross_entropy, self.top1 = first(values[0]), first(values[1])
        self.gradients_finite = _all_finite([first(g) for g in grads])
        self.l2_penalty = first(out['l2'])
        self.loss = self.cross_entropy + self.l2_penalty
        self.hook_outputs = []
        for size in hook_sizes:
            self.hook_outputs.append([first(t) for t in rest[:size]])
            rest = rest[size:]
        grads = strategy.run(self._transform_gradients, args=(grads,))
        variables = {_name(v): v for v in tf.global_variables()}
        momentum_slots = {n: tf.get_variable(n + '/Momentum', variables[n].shape, tf.float32,
                                             initializer=tf.zeros_initializer(), trainable=False)
                          for n in self._trainable_names}
        lr = tf.convert_to_tensor(self.learning_rate)
        updates = []
        momentum_update, moving_average_update = _momentum_update, _moving_average_update
        if self.loss_scale is not None:
            momentum_update = self.loss_scale.only_if_finite(self.gradients_finite,
                                                             _momentum_update)
            moving_average_update = self.loss_scale.only_if_finite(self.gradients_finite,
                                                                   _moving_average_update)
        for name, grad in zip(self._trainable_names, grads):
            updates.append(strategy.extended.update(
                variables[name], momentum_update,
                args=(grad, momentum_slots[name], lr, c.momentum, c.nesterov),
                group=True))
        for (name, decay), value in zip(self._moving_statistics, statistics):
            updates.append(strategy.extended.update(variables[name], moving_average_update,
                                                    args=(value, decay), group=True))
        with tf.control_dependencies(updates):
            if self.loss_scale is None:
                self.train_op = tf.group(self.global_step.assign_add(1))
            else:
                self.train_op = tf.group(self.global_step.assign_add(1),
                                         self.loss_scale.update(self.gradients_finite))
        self.key_variables = key_variables(self.trace)
        self.weights_finite = _all_finite(list(self.key_variables.values()))
        loaders(tf.get_default_graph(), self.key_variables)  # assign ops for the strategy's copies
        for name, tensor in (('loss', self.cross_entropy), ('total_loss', self.loss),
                             ('top1', self.top1), ('learning_rate', self.learning_rate)):
            tf.summary.scalar(name, tensor)
        if self.loss_scale is not None:
            tf.summary.scalar('loss_scale', self.loss_scale.scale)

    def _replica_step(self, images, labels):
        """One replica's part of a step: its slice of the global batch through the model -> loss,
        top-1, L2 penalty, raw gradients, BN batch statistics and the hooks' outputs (averaged over
        the replicas by `_build`)."""
        c = self.config
        context = tf.distribute.get_replica_context()
        start = context.replica_id_in_sync_group * self.per_replica_batch
        if self.local_batch != c.batch_size:  # this worker's replicas only
            start -= self.replicas.worker_index * self.local_batch
        images = images[start:start + self.per_replica_batch]
        labels = labels[start:start + self.per_replica_batch]
        conv_dtype = CONV_DTYPES[c.precision]
        dtypes = {'activation_dtype': tf.bfloat16} if c.precision == 'bf16_activations' else {}
        builder = self.builder_factory(images, phase_train=True, conv_dtype=conv_dtype,
                                       moving_average_updates=False, **dtypes)
        self._builders.append(builder)
        logits = self.model.build(builder, self.deps, self.num_logits).tensor
        cross_entropy = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        top1 = tf.reduce_mean(tf.cast(tf.nn.in_top_k(logits, labels, 1), tf.float32))
        trainable = tf.trainable_variables()
        l2_vars = [v for v in trainable if c.l2_filter(_name(v), v.shape.as_list())]
        # L2 as in the loss, wd * sum(l2_loss(v)), but added to the gradients directly (the same
        # gradient, wd * v, in _transform_gradients) so the penalty is only computed for summaries.
        l2 = (c.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in l2_vars])
              if c.weight_decay and l2_vars else tf.constant(0.0))
        objective = (cross_entropy if self.loss_scale is None
                     else self.loss_scale.scaled(cross_entropy))
        grads = tf.gradients(objective, trainable, gate_gradients=True)
        kept = [(g, v) for g, v in zip(grads, trainable) if g is not None]
        self._trainable_names = [_name(v) for _, v in kept]
        self._decayed = {_name(v) for v in l2_vars} if c.weight_decay else set()
        self._moving_statistics = [(_name(var), decay)
                                   for var, _, decay in builder.batch_statistics]
        hooks = [hook.replica_outputs(builder) for hook in self.hooks]
        self._hook_has_outputs = [out is not None for out in hooks]
        return {'loss': cross_entropy, 'top1': top1, 'l2': l2, 'grads': [g for g, _ in kept],
                'statistics': [value for _, value, _ in builder.batch_statistics],
                'hooks': [list(out or ()) for out in hooks]}

    def _transform_gradients(self, grads):
        """The gradient transforms, on each replica's copy of the averaged gradients (so they act
        once on the mean, never per replica): fp16's division by the loss scale, L2 (wd * v),
        keyword doubling, the grad_handler."""
        c = self.config
        if self.loss_scale is not None:
            grads = self.loss_scale.unscaled(grads)
        variables = {_name(v): v for v in tf.trainable_variables()}
        grads_and_vars = [(g + c.weight_decay * variables[n] if n in self._decayed else g,
                           variables[n]) for g, n in zip(grads, self._trainable_names)]
        grads_and_vars = double_keyword_gradients(grads_and_vars, c.double_gradient_keywords)
        if self.grad_handler is not None:
            grads_and_vars = self.grad_handler(grads_and_vars)
        return [g for g, _ in grads_and_vars]

    # -- checkpoints (see checkpoints.py) -------------------------------------------------------
    def checkpoints(self):
        """{step: directory} of the complete checkpoints in train_dir."""
        return self.checkpoint_dir.complete()

    def _diverged(self, what, step, lr):
        """Stop a run whose loss, gradients or weights became NaN or Inf at `step`; the
        checkpoints written before are kept."""
        last = self.checkpoints()
        raise UserError('%s at step %d (learning rate %g): training diverged. Lower the learning '
                        'rate or check the data; %s'
                        % (what, step, lr, 'the last good checkpoint, %s, is kept' % last[max(last)]
                           if last else 'no checkpoint was written yet'))

    def check_weights(self, session, step):
        """Stop before a checkpoint, snapshot or result would keep NaN or Inf weights."""
        if not session.run(self.weights_finite):
            self._diverged('the weights became non-finite (NaN or Inf)', step,
                           session.run(self.learning_rate))

    def save_checkpoint(self, session, step):
        self.check_weights(session, step)
        self.checkpoint_dir.save(self.saver, session, step,
                                 {'step': step, 'hooks': [h.state() for h in self.hooks],
                                  'logs': self.logs.sizes()})

    def _restore(self, session):
        """Restore the checkpoint found at construction; returns its step, or None."""
        if self._checkpoint is None:
            return None
        directory, state = self._checkpoint
        self.checkpoint_dir.restore(self.saver, session, directory)
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
        if self.writer is None:
            return
        summary = tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v))
                                    for k, v in values.items()])
        self.writer.add_summary(summary, step)

    def weights(self, session):
        return dict(zip(self.key_variables, session.run(list(self.key_variables.values()))))

    def snapshot(self, session, step):
        """Write ckpt_step_<step>.hdf5 (key variables, deps and any hook masks) in train_dir."""
        if not workers.writes_files():
            return
        self.check_weights(session, step)
        masks = {}
        for hook in self.hooks:
            masks.update(hook.masks() or {})
        hdf5_io.save_hdf5(os.path.join(self.train_dir, 'ckpt_step_%d.hdf5' % step),
                          self.weights(session), self.deps, masks, self.input_spec,
                          self.model.network, self.class_names)

    # -- loop -----------------------------------------------------------------------------------
    def run(self):
        c = self.config
        chief = workers.writes_files()
        if chief:
            os.makedirs(self.train_dir, exist_ok=True)
        config = self.replicas.session_config(
            tf_session.session_config(c.intra_threads, c.inter_threads))
        with tf.Session(self.replicas.target, graph=self.graph, config=config) as sess:
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
            writer = self.writer = (tf.summary.FileWriter(self.train_dir, self.graph) if chief
                                    else None)
            try:
                with _signals_between_steps() as signals:
                    step, stopped = self._loop(sess, step, writer, signals)
            except tf.errors.DataLossError as e:
                raise corrupt_record_error(self.data.description, e, 'training record')
            except tf.errors.InvalidArgumentError as e:
                if imagenet_pipeline.LABEL_ERROR not in e.message:
                    raise
                raise UserError('%s; the logits cover labels %d..%d. Convert the data again, or '
                                'train a model with more classes'
                                % (imagenet_pipeline.label_error(e.message), 0,
                                   (self.num_logits or self.model.num_classes) - 1))
            except replicas.LOST_WORKER_ERRORS as e:
                if not self.replicas.multi_worker:
                    raise
                raise replicas.lost_worker_error(e)
            finally:
                if writer is not None:
                    writer.close()
            self.save_checkpoint(sess, step)
            weights = self.weights(sess)
            if self.replicas.multi_worker:  # the workers' copies must agree: say so, checkably
                self.log('worker %d: weights sha256 %s at step %d' % (
                    self.replicas.worker_index, weights_digest(weights), step))
            return TrainResult(weights, step, stopped)

    def _loop(self, sess, step, writer, signals):
        c = self.config
        meter = ProgressMeter(c.num_steps, c.batch_size, step)
        base = {'train': self.train_op, 'loss': self.cross_entropy, 'top1': self.top1,
                'lr': self.learning_rate, 'finite': self.gradients_finite}
        if self.loss_scale is not None:
            base['loss_scale'] = self.loss_scale.scale
        last_ckpt_time = time.time()
        stopped = any(hook.finished() for hook in self.hooks)
        while step < c.num_steps and not stopped:
            fetches = dict(base)
            feed = {}
            for i, hook in enumerate(self.hooks):
                feed.update(hook.before_step(step))
                fetches['hook%d' % i] = (self.hook_outputs[i] if self._hook_has_outputs[i]
                                         else hook.fetches())
            if c.summary_every and (step + 1) % c.summary_every == 0:
                fetches['summary'] = self.summary_op
            values = sess.run(fetches, feed_dict=feed)
            if not np.isfinite(values['loss']):
                self._diverged('the loss became %s%s' % (values['loss'], FP16_RANGE
                                                         if self.loss_scale else ''),
                               step + 1, values['lr'])
            if not values['finite']:
                self._non_finite_gradients(values, step + 1)
            step += 1
            for i, hook in enumerate(self.hooks):
                stopped = hook.after_step(step, values['hook%d' % i]) or stopped
            if 'summary' in values and writer is not None:
                writer.add_summary(values['summary'], step)
            if step % c.display_every == 0 or step == c.num_steps or stopped:
                extra = '  '.join(s for s in [h.status() for h in self.hooks] +
                                  [self._loss_scale_status(values)] if s)
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

    def _non_finite_gradients(self, values, step):
        """fp32 and bf16 stop on non-finite gradients. fp16 has skipped the step in the graph and
        halved the loss scale: said in the log, unless the scale was at its floor already."""
        if self.loss_scale is None:
            self._diverged('the gradients became non-finite (NaN or Inf; the loss, %g, did not '
                           'show it)' % values['loss'], step, values['lr'])
        rule, scale = self.loss_scale.rule, float(values['loss_scale'])
        if at_floor(rule, scale):
            self._diverged('the gradients stayed non-finite (NaN or Inf) with the fp16 loss scale '
                           'at its floor of %g (the loss, %g, did not show it; the scale is '
                           'divided by %g on every such step, and the update skipped)'
                           % (rule.floor, values['loss'], rule.factor), step, values['lr'])
        self.log('step %d: non-finite fp16 gradients at loss scale %g: update skipped, loss scale '
                 '%g from the next step'
                 % (step, scale, next_state(rule, LossScaleState(scale), False).scale))

    def _loss_scale_status(self, values):
        return 'loss scale %g' % values['loss_scale'] if 'loss_scale' in values else ''


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


def train_to_file(model, deps, data, config, train_dir, out_file, logs=None, log=print,
                  input_spec=None, hooks=(), class_names=None):
    """Train `model` at `deps` from scratch into `out_file` (hdf5 with deps, the network
    description, the class names and, if given, the input spec), resuming from the checkpoints in
    `train_dir`."""
    trainer = Trainer(model, deps, data, config, train_dir, logs=logs, log=log,
                      input_spec=input_spec, hooks=hooks, class_names=class_names)
    log('training %s from scratch: deps %s, %d steps of %d on %d images'
        % (model.name, list(trainer.deps), config.num_steps, config.batch_size,
           trainer.num_examples))
    result = trainer.run()
    if not workers.writes_files():
        return out_file
    hdf5_io.save_hdf5(out_file, result.weights, trainer.deps, input_spec=input_spec,
                      network=model.network, class_names=trainer.class_names)
    log('saved %s' % out_file)
    return out_file


