"""How C-SGD and the magnitude baseline group each layer's filters, in plain NumPy/scikit-learn.

A plan for one layer is a list of clusters of output-channel indices (see tf_benchmarks.surgery):
C-SGD trains each cluster's filters to be identical and trims it to its smallest index; the
magnitude baseline keeps the highest-L1 filters. `bn_channel_clusters` carries a layer's clusters
into every BN that normalizes its channels (for DenseNet: every later BN of the stage, the transition
and `bnlast`), which is the original's `calculate_bn_eqcls_dc40` derived from the topology.
"""

import warnings

import numpy as np

from tf_benchmarks.pruning.criteria import filters_as_points


def kmeans_clusters(kernel, num_clusters, seed=0, n_init=10):
    """k-means (k-means++, `n_init` runs, fixed seed) of the filters; every cluster non-empty."""
    points = filters_as_points(kernel)
    n = len(points)
    if num_clusters >= n:
        return [[i] for i in range(n)]
    from sklearn.cluster import KMeans
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # identical filters give fewer distinct clusters: fixed below
        labels = KMeans(n_clusters=num_clusters, init='k-means++', n_init=n_init,
                        random_state=seed).fit(points.astype(np.float64)).labels_
    clusters = [list(np.flatnonzero(labels == c)) for c in range(num_clusters)]
    return _fill_empty(clusters)


def _fill_empty(clusters):
    """Move single filters from the largest clusters into empty ones (deterministically)."""
    clusters = [sorted(int(i) for i in c) for c in clusters]
    for empty in [i for i, c in enumerate(clusters) if not c]:
        largest = max(range(len(clusters)), key=lambda i: (len(clusters[i]), -i))
        clusters[empty] = [clusters[largest].pop()]
    return sorted(clusters)


def even_clusters(n, num_clusters):
    """Consecutive blocks of ceil or floor(n / num_clusters) indices."""
    return [list(map(int, block)) for block in np.array_split(np.arange(n), num_clusters)]


def biased_clusters(n, num_clusters):
    """One cluster of the first n - num_clusters + 1 indices; the rest are singletons."""
    first = n - num_clusters + 1
    return [list(range(first))] + [[i] for i in range(first, n)]


def magnitude_plan(l1, keep, variant='original'):
    """Keep the `keep` filters of largest L1 norm (`l1`: one norm per filter; for a channel group,
    the sum over its members' kernels).

    'original' reproduces the original encoding: every kept filter is a singleton cluster in index
    order and all dropped filters are appended to the first kept one's cluster, so the trimming sums
    their consumer slices into it and the smallest index of that cluster survives (often a dropped,
    low-magnitude filter). 'clean' keeps the kept filters and simply removes the others.
    """
    n = len(l1)
    order = np.argsort(l1, kind='stable')
    dropped = [int(i) for i in order[:n - keep]]
    kept = sorted(int(i) for i in order[n - keep:])
    if variant == 'clean':
        return [[k] for k in kept]
    if variant != 'original':
        raise ValueError('magnitude variant must be original or clean, got %r' % (variant,))
    return [[kept[0]] + dropped] + [[k] for k in kept[1:]]


def bn_channel_clusters(trace, layer_clusters):
    """{bn index: clusters of that BN's channel indices}: every clustered producer's clusters
    (a channel group's for each of its members) shifted to where its channels sit in the BN's
    input; other channels are singletons."""
    layer_clusters = trace.expand_to_groups(layer_clusters)
    result = {}
    for bn in trace.bns:
        clusters, covered = [], set()
        for seg in bn.segments:
            if seg.producer is not None and seg.producer in layer_clusters:
                for cluster in layer_clusters[seg.producer]:
                    clusters.append([seg.offset + c for c in cluster])
                    covered.update(seg.offset + c for c in range(seg.count))
        clusters += [[c] for c in range(bn.channels) if c not in covered]
        result[bn.index] = sorted(sorted(c) for c in clusters)
    return result


def check_clusters(plans, layers, widths, targets, source, partial=False):
    """Raise a UserError unless `plans` has, for every layer in `layers` (the channel groups'
    roots; all of them unless `partial`) and no other, `targets[l]` clusters that together hold
    each of the layer's `widths[l]` filters once."""
    from tf_benchmarks.core.errors import UserError
    problems = []
    extra = sorted(set(plans) - set(layers))
    if extra:
        problems.append('layers %s are not clustered layers of this model (%d conv layers, '
                        'channel groups named by their first layer)' % (extra, len(widths)))
    missing = [] if partial else sorted(set(layers) - set(plans))
    if missing:
        problems.append('layers %s have no clusters' % missing)
    for layer in sorted(set(plans) & set(layers)):
        clusters = plans[layer]
        members = sorted(i for c in clusters for i in c)
        if members != list(range(widths[layer])) or min(map(len, clusters), default=0) < 1:
            problems.append('layer %d: the clusters do not hold filters 0..%d once each'
                            % (layer, widths[layer] - 1))
        elif len(clusters) != targets[layer]:
            problems.append('layer %d: %d clusters, the target width is %d'
                            % (layer, len(clusters), targets[layer]))
    if problems:
        raise UserError('%s does not match this model and target (%s%s); it belongs to another '
                        'model or --target_deps. Pass --restart_from with the clusters stage to '
                        'recompute it' % (source, '; '.join(problems[:4]),
                                          ' ...' if len(problems) > 4 else ''))
