"""The AOFP binary-search state machine, per target layer, in plain Python/NumPy (no graph).

Every training step each layer drops a random half of its search space S from the score path; the
step's error metric of the next layer is credited to every dropped filter. When a layer's half is
over (`batches_per_half` steps after it started), the m filters with the smallest mean error pass
(m = `calc_next_half_size(s)` on the first half of a move, s // 2 afterwards); then
  - move:   the worst of them has mean error <= limit -> all m are pruned (mask 0), restart on the
            remaining filters;
  - quit:   else if m <= 1 -> nothing can be pruned now, restart on all alive filters;
  - refine: else S = the m passed filters, next half.
Layers start staggered (`start_step + i * (batches_per_half // n_layers)`) and accumulate errors from
the first step, as in the original.

Widths (`min_width` N, `round_to` M, both 1 by default, which is the original): a move keeps
kept = max(ceil((alive - m) / M) * M, floor) filters, floor = ceil(N / M) * M (at most alive), and
removes the alive - kept passed filters of smallest mean error; the other passed filters, the
next-best, stay. A move that would remove none is a quit (a new move on all alive filters), and a
refinement whose next half could remove none is one too; a layer at its floor is searched no more.
So every width the search leaves is a multiple of M (or the layer's untouched width) and >= N. Deviations: a filter never dropped in a half has mean error
+inf (the original's 0 would prune it on no evidence), and the FLOPs target is checked right after a
move is applied (the original checked the widths before the move, overshooting by one more move).
With a latency target, the same check asks the latency table's prediction instead.
"""

import math

import numpy as np

DROP_SEED = 4321  # the drop RNG's seed (the original's np.random.seed); --seed derives another


def calc_next_half_size(s):
    """First-half target size: the power of two with s/4 < p <= s/2 or s/2 < p <= s whose ratio
    to s is closest to 2 (64->32, 48->32, 40->16, 3->2, 2->1)."""
    if s < 2:
        raise ValueError('a search space of %d filters cannot be halved' % s)
    small = 1 << int(math.floor(math.log2(s / 2.0)))
    large = small * 2
    return small if s / small - 2 <= 2 - s / large else large


def kept_after_move(alive, passed, min_width=1, round_to=1):
    """How many filters a layer of `alive` keeps when `passed` of them passed a move (see the
    module docstring): the rest rounded up to a multiple of round_to, at least the floor."""
    floor = min(alive, -(-min_width // round_to) * round_to)
    return max(-(-(alive - passed) // round_to) * round_to, floor)


class LayerState:
    """Mask, search space and accumulated errors of one target layer; `floor` is the fewest
    filters it may keep (a layer at its floor has an empty search space)."""

    def __init__(self, mask, half_start, floor=1):
        self.mask = np.asarray(mask, dtype=np.float32).copy()
        self.half_start = half_start
        self.floor = floor
        self.reset(half_start)

    def reset(self, step):
        """Start a new move: the search space is every alive filter (none at the floor)."""
        self.space = np.flatnonzero(self.mask > 0.5)
        if self.floor > 1 and len(self.space) <= self.floor:
            self.space = self.space[:0]
        self.first_half = True
        self._new_half(step)

    def _new_half(self, step):
        self.err_sum = np.zeros(len(self.mask))
        self.err_count = np.zeros(len(self.mask), dtype=np.int64)
        self.half_start = step

    def refine(self, passed, step):
        self.space = np.sort(passed)
        self.first_half = False
        self._new_half(step)

    @property
    def alive(self):
        return int((self.mask > 0.5).sum())

    def state(self):
        return {'mask': self.mask.tolist(), 'space': self.space.tolist(),
                'first_half': self.first_half, 'half_start': self.half_start,
                'err_sum': self.err_sum.tolist(), 'err_count': self.err_count.tolist()}

    @classmethod
    def from_state(cls, state):
        layer = cls(state['mask'], state['half_start'])
        layer.space = np.asarray(state['space'], dtype=np.int64)
        layer.first_half = state['first_half']
        layer.err_sum = np.asarray(state['err_sum'], dtype=np.float64)
        layer.err_count = np.asarray(state['err_count'], dtype=np.int64)
        return layer


class AofpSearch:
    """All target layers searched simultaneously and independently.

    masks: initial 0/1 masks, one per target layer. flops_pruned(widths) -> fraction of FLOPs removed
    for the alive widths of the target layers. Call `step_masks()` before and `record(step, metrics)`
    after every training step (step counts from 1).
    """

    def __init__(self, masks, batches_per_half, metric_limit, start_step, flops_pruned,
                 target_flops_pruned, seed=DROP_SEED, single_dropout=False, log=None, reached=None,
                 min_width=1, round_to=1):
        """`reached(widths)`, where given, says when the search ends in place of the FLOPs
        target (AOFP's latency target)."""
        n = len(masks)
        self.reached = reached or (lambda widths: self.flops_pruned(widths) >= self.target)
        self.min_width, self.round_to = int(min_width), int(round_to)
        self.batches_per_half = batches_per_half
        self.metric_limit = metric_limit
        self.flops_pruned = flops_pruned
        self.target = target_flops_pruned
        self.single_dropout = single_dropout
        self.log = log or (lambda message: None)
        stagger = batches_per_half // n
        self.layers = [LayerState(m, start_step + i * stagger, self._floor(len(m)))
                       for i, m in enumerate(masks)]
        self.rng = np.random.RandomState(seed)
        self.num_moves = 0
        self.terminated = False
        self._dropped = None

    def _floor(self, width):
        return kept_after_move(width, width, self.min_width, self.round_to)

    @property
    def widths(self):
        return [layer.alive for layer in self.layers]

    @property
    def masks(self):
        return [layer.mask.copy() for layer in self.layers]

    def step_masks(self):
        """Draw this step's random drops: [(base_mask, dropped filter indices)] per layer; the
        score path of a layer is its base mask with the dropped filters also set to 0."""
        self._dropped = []
        for layer in self.layers:
            s = len(layer.space)
            num_drop = 1 if self.single_dropout else s // 2
            drop = self.rng.choice(layer.space, num_drop, replace=False) if num_drop else \
                np.zeros(0, np.int64)
            self._dropped.append(np.sort(drop).astype(np.int32))
        return [(layer.mask.copy(), drop) for layer, drop in zip(self.layers, self._dropped)]

    def record(self, step, metrics):
        """Credit this step's metric of each layer to its dropped filters, then run the decisions.

        Returns the indices of the layers that made a move in this step.
        """
        if self._dropped is None:
            raise RuntimeError('record() called without step_masks()')
        moved = []
        for i, (layer, drop, metric) in enumerate(zip(self.layers, self._dropped, metrics)):
            layer.err_sum[drop] += float(metric)
            layer.err_count[drop] += 1
            if step - layer.half_start < self.batches_per_half or len(layer.space) <= 1:
                continue
            if self._decide(i, layer, step):
                moved.append(i)
        self._dropped = None
        return moved

    def _decide(self, i, layer, step):
        space = layer.space
        s = len(space)
        counts = layer.err_count[space]
        avg = np.where(counts > 0, layer.err_sum[space] / np.maximum(counts, 1), np.inf)
        m = calc_next_half_size(s) if layer.first_half else s // 2
        order = np.argsort(avg, kind='stable')
        passed = space[order[:m]]
        tmax = avg[order[m - 1]]
        limit = self.metric_limit
        self.log('layer %d: one half finished, %d passed, %d blocked' % (i, m, s - m))
        removed = layer.alive - kept_after_move(layer.alive, m, self.min_width, self.round_to)
        if tmax <= limit and removed <= 0:
            self.log('layer %d: max metric %s < limit %s, but removing them would leave a width '
                     'below --min_width or off a multiple of --round_to; new move' % (i, tmax, limit))
            layer.reset(step)
            return False
        if tmax <= limit:
            passed = passed[:removed]  # the next-best passed filters stay
            layer.mask[passed] = 0.0
            layer.reset(step)
            self.num_moves += 1
            self.log('layer %d: max metric %s < limit %s, pruned %s, move to next move'
                     % (i, tmax, limit, sorted(passed.tolist())))
            if self.reached(self.widths):
                self.terminated = True
            return True
        if m <= 1 or kept_after_move(layer.alive, m // 2, self.min_width,
                                     self.round_to) >= layer.alive:
            self.log('layer %d: max metric %s > limit %s even when reached min granu %d, refining '
                     'ended' % (i, tmax, limit, m))
            layer.reset(step)
        else:
            self.log('layer %d: max metric %s > limit %s, continue refining' % (i, tmax, limit))
            layer.refine(passed, step)
        return False

    def state(self):
        kind, keys, pos, has_gauss, cached = self.rng.get_state()
        return {'layers': [layer.state() for layer in self.layers], 'num_moves': self.num_moves,
                'terminated': self.terminated,
                'rng': [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}

    def load_state(self, state):
        self.layers = [LayerState.from_state(s) for s in state['layers']]
        for layer in self.layers:
            layer.floor = self._floor(len(layer.mask))
        self.num_moves = state['num_moves']
        self.terminated = state['terminated']
        kind, keys, pos, has_gauss, cached = state['rng']
        self.rng.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
