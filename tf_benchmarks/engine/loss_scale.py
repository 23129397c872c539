"""Dynamic loss scaling for `--precision fp16`, as plain Python: the rule (initial scale, growth
interval, factor, floor) and its state machine, which the trainer's graph version
(loss_scale_graph.py) follows step for step."""

import dataclasses
import math

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class LossScaleRule:
    """TensorFlow's LossScaleOptimizer and PyTorch's GradScaler defaults: start at 2**15; after
    `growth_steps` consecutive steps with finite gradients multiply the scale by `factor` (unless
    that overflows float32); on a step with a non-finite gradient skip the update and divide the
    scale by `factor`, never below `floor`."""
    initial: float = 2.0 ** 15
    growth_steps: int = 2000
    factor: float = 2.0
    floor: float = 1.0

    def __post_init__(self):
        for name in ('initial', 'factor', 'floor'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError('loss scale %s must be a positive finite number, got %r'
                                 % (name, value))
        if self.factor <= 1:
            raise ValueError('loss scale factor must be above 1, got %r' % (self.factor,))
        if not self.floor <= self.initial <= FLOAT32_MAX:
            raise ValueError('the initial loss scale %r must lie between the floor %r and the '
                             'float32 maximum' % (self.initial, self.floor))
        if not (isinstance(self.growth_steps, int) and self.growth_steps >= 1):
            raise ValueError('loss scale growth_steps must be a positive integer, got %r'
                             % (self.growth_steps,))


@dataclasses.dataclass(frozen=True)
class LossScaleState:
    """The scale of the next step and the finite steps in a row since it last changed."""
    scale: float
    good_steps: int = 0


def initial_state(rule):
    return LossScaleState(float(np.float32(rule.initial)), 0)


def next_state(rule, state, finite):
    """The state after a step whose (scaled) gradients were all finite or not, in float32
    arithmetic as in the graph. The step's update is applied only if `finite` (`applies_update`)."""
    scale, factor = np.float32(state.scale), np.float32(rule.factor)
    if not finite:
        return LossScaleState(float(max(scale / factor, np.float32(rule.floor))), 0)
    good = state.good_steps + 1
    if good < rule.growth_steps:
        return LossScaleState(state.scale, good)
    with np.errstate(over='ignore'):
        grown = scale * factor
    return LossScaleState(float(grown) if np.isfinite(grown) else state.scale, 0)


def applies_update(finite):
    """A step changes the weights, momentum and BN moving averages only if its gradients were
    finite; otherwise it is skipped (the global step and the input still advance)."""
    return bool(finite)


def at_floor(rule, scale):
    """True when the scale cannot be lowered further: non-finite gradients at this scale are not
    an overflow of the scaling but a diverged run."""
    return scale <= rule.floor


def replay(rule, finite_flags, state=None):
    """The states after each step of a sequence of finite (True) / non-finite (False) steps."""
    state = initial_state(rule) if state is None else state
    out = []
    for finite in finite_flags:
        state = next_state(rule, state, finite)
        out.append(state)
    return out
