"""Runs the AOFP search inside training: assigns each step's masks to the masked graph's mask
variables, hands the metrics (averaged over the replicas) to the state machine, logs its decisions
and saves masks with snapshots. One random draw and one decision per step, however many replicas."""

import numpy as np

from tf_benchmarks.runs.logs import log_important
import tensorflow.compat.v1 as tf
from tf_benchmarks.engine.hooks import TrainHook


class SearchHook(TrainHook):
    def __init__(self, search, target_layers, log_file, remain_log_steps=5000, save_per_moves=10,
                 flops_note=None):
        """flops_note(widths): text after the FLOPs share of the progress line (the share under
        the model's other FLOPs convention), or None."""
        self.search = search
        self.flops_note = flops_note
        self.target_layers = list(target_layers)
        self.log_file = log_file
        self.remain_log_steps = remain_log_steps
        self.save_per_moves = save_per_moves
        search.log = self.log

    def log(self, message):
        log_important(message, self.log_file)

    def replica_outputs(self, builder):
        return [builder.metrics[i] for i in self.target_layers]

    def begin(self, trainer):
        """Assign ops for the mask variables (every copy of them, under a strategy)."""
        self.trainer = trainer
        self.values, assigns = [], []
        for i in self.target_layers:
            for var in trainer.builder.variables_of_masks[i]:
                value = tf.placeholder(tf.float32, var.shape)
                self.values.append(value)
                assigns.append(var.assign(value))
        self.assign = tf.group(*assigns)

    def after_create_session(self, session, step):
        self.session = session

    def before_step(self, step):
        feed = {}
        values = iter(self.values)
        for (mask, drop), layer in zip(self.search.step_masks(), self.target_layers):
            feed[next(values)] = mask
            dropped = np.zeros(len(mask), np.float32)
            dropped[drop] = 1.0
            feed[next(values)] = dropped
        self.session.run(self.assign, feed)
        return {}

    def after_step(self, step, values):
        moves_before = self.search.num_moves
        moved = self.search.record(step, values)
        if moved:
            scalars = {'remain_layer%d' % i: w for i, w in zip(self.target_layers,
                                                               self.search.widths)}
            scalars['flops_pruned'] = self.search.flops_pruned(self.search.widths)
            self.trainer.add_scalars(step, scalars)
            if self.save_per_moves and (self.search.num_moves // self.save_per_moves >
                                        moves_before // self.save_per_moves):
                self.trainer.snapshot(self.session, step)
        if self.remain_log_steps and step % self.remain_log_steps == 0:
            self.log('**********the remain deps at global step %d is %s'
                     % (step, self.search.widths))
        return self.search.terminated

    def finished(self):
        return self.search.terminated

    def state(self):
        return self.search.state()

    def load_state(self, state):
        self.search.load_state(state)

    def status(self):
        widths = self.search.widths
        return 'deps %s  FLOPs -%.1f%%%s  moves %d' % (
            widths, 100 * self.search.flops_pruned(widths),
            self.flops_note(widths) if self.flops_note else '', self.search.num_moves)

    def masks(self):
        return dict(zip(self.target_layers, self.search.masks))
