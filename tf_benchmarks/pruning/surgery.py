"""The one pruning surgery for every method: per conv layer, which channels survive and which are
summed into them, applied to a weights dict (name -> array) with the topology of a `NetworkTrace`.

A layer's plan is a list of clusters of its output-channel indices. Each cluster keeps one channel,
its smallest index (the survivor); channels in no cluster are removed. In every slot where the
layer's channels live (see `network.trace.Slot`):
  - SELECT slots (the conv's own output axis, BN vectors) keep the survivor's entry;
  - SUM slots (consumer conv input axes, FC rows) get the members' entries added into the survivor's.
AOFP's masks are singleton clusters of the alive filters, magnitude pruning keeps its top filters
(with the original's quirk: the dropped ones summed into the first kept one), and C-SGD's k-means
clusters are trimmed as they are. All plans are applied at once, in original coordinates. Layers
whose outputs are added (a channel group of the trace) share one plan: it is given for any member
and applied to every member's slots, so tied layers always lose the same channels.
"""

import numpy as np

from tf_benchmarks.network.trace import SELECT


def clusters_from_mask(mask):
    """Singleton clusters of the channels whose mask is 1 (AOFP); the others are removed."""
    return [[int(i)] for i in np.flatnonzero(np.asarray(mask) > 0.5)]


def remove_masked(trace, weights, masks):
    """Physically remove the filters an AOFP tuned file masks out ({layer: 0/1 vector}, a channel
    group's mask given for its first layer) -> (weights, deps); exact: the pruned model computes
    what the masked one does."""
    return apply_surgery(trace, weights, {i: clusters_from_mask(m) for i, m in masks.items()})


def validate_clusters(clusters, width, layer):
    seen = set()
    if not clusters:
        raise ValueError('layer %d: at least one channel must survive' % layer)
    for cluster in clusters:
        if not len(cluster):
            raise ValueError('layer %d: empty cluster' % layer)
        for c in cluster:
            if not 0 <= c < width:
                raise ValueError('layer %d: channel %d out of range 0..%d' % (layer, c, width - 1))
            if c in seen:
                raise ValueError('layer %d: channel %d is in two clusters' % (layer, c))
            seen.add(c)


def plan_surgery(trace, layer_clusters):
    """{(var, axis): {old position: [old positions summed into it] or None (removed)}}. A plan
    given for one member of a channel group applies to every member."""
    plans = {}
    for layer, clusters in trace.expand_to_groups(layer_clusters).items():
        width = trace.convs[layer].out_channels
        clusters = [sorted(int(c) for c in cluster) for cluster in clusters]
        validate_clusters(clusters, width, layer)
        for slot in trace.slots[layer]:
            plan = plans.setdefault((slot.var, slot.axis), {})
            for channel in range(width):
                for pos in slot.positions(channel):
                    plan[pos] = None
            for cluster in clusters:
                survivor = slot.positions(cluster[0])
                if slot.kind == SELECT:
                    for pos in survivor:
                        plan[pos] = [pos]
                else:
                    members = [slot.positions(c) for c in cluster]
                    for rep, pos in enumerate(survivor):
                        plan[pos] = [m[rep] for m in members]
    return plans


def _reduce_axis(array, axis, plan):
    groups = [plan.get(i, [i]) for i in range(array.shape[axis])]
    groups = [g for g in groups if g is not None]
    out = np.take(array, [g[0] for g in groups], axis=axis)
    for new_index, group in enumerate(groups):
        if len(group) > 1:
            index = [slice(None)] * array.ndim
            index[axis] = new_index
            out[tuple(index)] += np.take(array, group[1:], axis=axis).sum(axis=axis)
    return out


def apply_surgery(trace, weights, layer_clusters):
    """Prune `weights` (name -> array, full widths of `trace`) by `layer_clusters`.

    Returns (new weights dict, new deps). Layers not in `layer_clusters` are unchanged; variables
    no slot touches are copied.
    """
    plans = plan_surgery(trace, layer_clusters)
    new = {name: np.array(value, copy=True) for name, value in weights.items()}
    for (var, axis), plan in plans.items():
        if var not in new:
            raise KeyError('weights lack %s, which the topology prunes' % var)
        new[var] = _reduce_axis(new[var], axis, plan)
    deps = list(trace.deps)
    for layer, clusters in trace.expand_to_groups(layer_clusters).items():
        deps[layer] = len(clusters)
    return new, deps
