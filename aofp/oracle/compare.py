"""How filter-importance estimates compare with the oracle, in plain NumPy: Spearman rank
correlation (average ranks for ties), overlap of the least important halves, and the filters each
estimate would remove together at k = 1/8, 1/4 and 1/2 of a layer."""

import numpy as np

# (name, fraction of the layer) of the removal sizes compared
FRACTIONS = (('1/8', 1 / 8), ('1/4', 1 / 4), ('1/2', 1 / 2))
ORACLE_LOSS = 'oracle_loss'      # the oracle: the loss increase when a filter alone is removed
ORACLE_METRIC = 'oracle_metric'  # AOFP's own metric, measured exactly for each filter alone


def rankdata(values):
    """Ranks 1..n of `values` (smallest first); tied values get the mean of their ranks. +inf is
    ranked last (tied with other +inf); NaN is a ValueError."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError('cannot rank NaN scores')
    n = len(values)
    order = np.argsort(values, kind='stable')
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if n else np.zeros(0, int)
    ends = np.r_[starts[1:], n]
    ranks = np.empty(n)
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0  # mean of ranks start+1 .. end
    return ranks


def spearman(a, b):
    """Spearman's rank correlation of two score vectors: Pearson's correlation of their average
    ranks. NaN where it is undefined (fewer than 2 entries, or all of one vector tied)."""
    if len(a) != len(b):
        raise ValueError('score vectors of different lengths: %d and %d' % (len(a), len(b)))
    if len(a) < 2:
        return float('nan')
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denominator == 0:
        return float('nan')
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))


def least_important(scores, k):
    """The k filters with the smallest scores (ties: the smaller index first), sorted."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind='stable')
    return sorted(int(i) for i in order[:k])


def overlap(estimate, reference, k=None):
    """Fraction of the reference's k least important filters that the estimate's k least important
    also hold (k: half the layer, rounded down, by default)."""
    k = len(reference) // 2 if k is None else k
    if k < 1:
        return float('nan')
    return len(set(least_important(estimate, k)) & set(least_important(reference, k))) / float(k)


def removal_sizes(width):
    """{'1/8': k, ...}: floor(width * fraction), at least 1 and at most width - 1 (a layer keeps
    one filter, as in AOFP)."""
    if width < 2:
        raise ValueError('a layer of %d filter has nothing to remove' % width)
    return {name: int(min(max(1, int(width * fraction)), width - 1))
            for name, fraction in FRACTIONS}


def compare_layer(oracle_loss, oracle_metric, estimates, removal_loss):
    """Compare estimates of one layer's filter importance (small = prunable) with the oracle.

    oracle_loss, oracle_metric: per-filter oracle scores; estimates: {name: per-filter scores}
    (e.g. aofp, l1, gamma); removal_loss(filters) -> the loss increase when those filters are removed
    together. Returns
      spearman:     {name: {oracle_loss: rho, oracle_metric: rho}} (oracle_metric against the loss
                    too),
      half_overlap: {name: {oracle_loss: fraction, oracle_metric: fraction}},
      removal:      {'1/8': {k, removed: {name: filters}, loss_increase: {name: value}}, ...}, where
                    the name oracle_loss is the greedy single-filter oracle: the k filters whose
                    removal alone costs least.
    """
    references = {ORACLE_LOSS: oracle_loss, ORACLE_METRIC: oracle_metric}
    ranked = dict([(ORACLE_METRIC, oracle_metric)] + sorted(estimates.items()))
    result = {'spearman': {}, 'half_overlap': {}, 'removal': {}}
    for name, scores in ranked.items():
        result['spearman'][name] = {ref: spearman(scores, values)
                                    for ref, values in references.items() if ref != name}
        result['half_overlap'][name] = {ref: overlap(scores, values)
                                        for ref, values in references.items() if ref != name}
    cache = {}
    everyone = dict([(ORACLE_LOSS, oracle_loss)] + list(ranked.items()))
    for label, k in removal_sizes(len(oracle_loss)).items():
        removed = {name: least_important(scores, k) for name, scores in everyone.items()}
        increases = {}
        for name, filters in removed.items():
            key = tuple(filters)
            if key not in cache:
                cache[key] = float(removal_loss(filters))
            increases[name] = cache[key]
        result['removal'][label] = {'k': k, 'removed': removed, 'loss_increase': increases}
    return result
