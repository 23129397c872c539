"""The graph version of loss_scale.py's rule, for the trainer's `--precision fp16`: the scale and
good-step variables (saved in every checkpoint), the scaled loss, the unscaled gradients, updates
that run only on steps whose gradients are finite (tf.cond), and the scale's update (tf.where)."""

import tensorflow.compat.v1 as tf

from tf_benchmarks.engine.loss_scale import LossScaleRule

SCOPE = 'loss_scaling'  # not 'loss_scale', the TensorBoard tag of the scale


class GraphLossScale:
    """Create inside the training graph (and the strategy's scope), in cross-replica context.

    `scale` and `good_steps` are read once per step, before anything is updated: the loss is
    multiplied and the gradients divided by that `scale`, and it is the one fetched and
    summarized, so a step's line shows the scale the step used."""

    def __init__(self, rule=LossScaleRule()):
        self.rule = rule
        with tf.variable_scope(SCOPE):
            self.scale_variable = tf.get_variable(
                'scale', [], tf.float32, initializer=tf.constant_initializer(rule.initial),
                trainable=False, use_resource=True)
            self.good_steps_variable = tf.get_variable(
                'good_steps', [], tf.int64, initializer=tf.zeros_initializer(), trainable=False,
                use_resource=True)
        self.scale = self.scale_variable.read_value()
        self.good_steps = self.good_steps_variable.read_value()

    def scaled(self, loss):
        return loss * tf.cast(self.scale, loss.dtype)

    def unscaled(self, grads):
        return [g / tf.cast(self.scale, g.dtype) for g in grads]

    def only_if_finite(self, finite, update):
        """`update(var, *args)` (a variable update of a strategy's `extended.update`) made to run
        only when the boolean tensor `finite` is true; a no-op otherwise."""
        def guarded(var, *args):
            return tf.cond(finite, lambda: tf.group(update(var, *args)), tf.no_op)
        return guarded

    def update(self, finite):
        """The op that sets the variables to loss_scale.next_state of this step's read values."""
        r = self.rule
        factor = tf.constant(r.factor, tf.float32)
        good = self.good_steps + 1
        grow = tf.logical_and(finite, good >= r.growth_steps)
        grown = self.scale * factor
        kept = tf.where(tf.logical_and(grow, tf.is_finite(grown)), grown, self.scale)
        lowered = tf.maximum(self.scale / factor, tf.constant(r.floor, tf.float32))
        new_scale = tf.where(finite, kept, lowered)
        new_good = tf.where(tf.logical_and(finite, tf.logical_not(grow)), good,
                            tf.zeros_like(good))
        return tf.group(self.scale_variable.assign(new_scale),
                        self.good_steps_variable.assign(new_good))
