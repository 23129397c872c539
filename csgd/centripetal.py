"""The centripetal gradient rule of C-SGD as merge and decay matrices (the original's
MergeGradientHandler, version 2), in NumPy for reference and as a graph gradient handler.

For a layer with filters as rows of W (n x d), data gradient G and clusters H:
    merge  Gamma[i, j] = 1/|H| if i and j are in the same cluster H, else 0
    decay  Lambda = (eta + eps) I - eps Gamma            (singleton: Lambda[i, i] = eta)
    G~ = Gamma G + Lambda W,  i.e. per filter j in H:
    g~_j = mean_{k in H} dL/dw_k + eta w_j + eps (w_j - mean_{k in H} w_k).
Within a cluster the data gradient is shared, so g~_j - g~_k = (eta + eps)(w_j - w_k): the members'
differences shrink geometrically. Conv kernels get weight decay eta only through Lambda (the loss has
no L2); BN gamma/beta get the same rule with eta = 0; the FC kernel gets no decay at all.
"""

import numpy as np

import tensorflow.compat.v1 as tf
from tf_benchmarks.network.convnet_builder import variable_name
from tf_benchmarks.engine.hooks import TrainHook
from tf_benchmarks.network.trace import SELECT


def merge_matrix(clusters, n):
    gamma = np.zeros((n, n))
    for cluster in clusters:
        for i in cluster:
            gamma[i, list(cluster)] = 1.0 / len(cluster)
    covered = sorted(c for cluster in clusters for c in cluster)
    if covered != list(range(n)):
        raise ValueError('clusters must cover channels 0..%d exactly once' % (n - 1))
    return gamma


def decay_matrix(clusters, n, weight_decay, strength):
    return (weight_decay + strength) * np.eye(n) - strength * merge_matrix(clusters, n)


def centripetal_gradient(grad, weights, clusters, weight_decay, strength):
    """NumPy reference: rows are filters (n x d)."""
    n = grad.shape[0]
    return merge_matrix(clusters, n) @ grad + decay_matrix(clusters, n, weight_decay, strength) @ \
        weights


def _apply(grad, var, gamma, weight_decay, strength, axis=-1):
    """Graph form of Gamma G + Lambda W = Gamma (G - eps W) + (eta + eps) W, filters on `axis`
    of `var` (the last: HWIO kernels, BN vectors; 2: depthwise kernels). Singleton-only layers
    reduce to G + eta W."""
    ndim = len(var.shape.as_list())
    if axis not in (-1, ndim - 1):
        order = [a for a in range(ndim) if a != axis] + [axis]
        back = [order.index(a) for a in range(ndim)]
        moved = _apply(tf.transpose(grad, order), tf.transpose(var, order), gamma, weight_decay,
                       strength)
        return tf.transpose(moved, back)
    n = var.shape.as_list()[-1]
    if np.array_equal(gamma, np.eye(n)):
        return grad + weight_decay * var if weight_decay else grad
    flat = lambda t: tf.reshape(t, [-1, n])  # noqa: E731  (rows: weights, columns: filters)
    merged = tf.matmul(flat(grad - strength * var), tf.constant(gamma, tf.float32))
    return tf.reshape(merged, tf.shape(var)) + (weight_decay + strength) * var


class CentripetalHandler:
    """Trainer grad_handler: rewrites the gradients of clustered conv kernels (a channel group's
    clusters, given for its first layer, reach every member) and of the gamma/beta of every BN over
    clustered channels. `bn_strength` defaults to `strength` (the TF demo's)."""

    def __init__(self, trace, layer_clusters, bn_clusters, weight_decay, strength,
                 bn_strength=None, clustered_weight_decay=None):
        layer_clusters = trace.expand_to_groups(layer_clusters)  # followers: the pacesetter's
        self.kernels = {trace.convs[l].kernel: merge_matrix(c, trace.convs[l].out_channels)
                        for l, c in layer_clusters.items()}
        self.vectors = {}
        for bn in trace.bns:
            gamma = merge_matrix(bn_clusters[bn.index], bn.channels)
            if not np.array_equal(gamma, np.eye(bn.channels)):
                self.vectors[bn.scope + '/gamma'] = gamma
                self.vectors[bn.scope + '/beta'] = gamma
        # Every other SELECT slot of a clustered layer (a conv's bias; a depthwise conv's kernel
        # and bias over the layer's channels, imported networks) gets the centripetal term too,
        # so its clusters collapse with the kernel's and the trim stays exact: name -> (matrix
        # over the variable's channel axis, that axis).
        self.others = {}
        vectors = set(self.vectors) | {'%s/%s' % (bn.scope, role) for bn in trace.bns
                                       for role in ('gamma', 'beta', 'moving_mean',
                                                    'moving_variance')}
        for layer, clusters in layer_clusters.items():
            for slot in trace.slots[layer]:
                if slot.kind != SELECT or slot.var in self.kernels or slot.var in vectors:
                    continue
                if slot.var not in self.others:
                    n = trace.variables[slot.var].shape[slot.axis]
                    self.others[slot.var] = (np.eye(n), slot.axis)
                matrix = self.others[slot.var][0]
                for cluster in clusters:
                    positions = [slot.offset + c for c in cluster]
                    matrix[np.ix_(positions, positions)] = 1.0 / len(cluster)
        self.weight_decay = weight_decay
        # The decay of kernels with clusters of several filters (the authors' ImageNet code: 0,
        # the centripetal term alone); singleton-only kernels keep `weight_decay`.
        self.clustered_weight_decay = (weight_decay if clustered_weight_decay is None
                                       else clustered_weight_decay)
        self.strength = strength
        self.bn_strength = strength if bn_strength is None else bn_strength
        self.summary = None  # what the handler did, for the log (set when the graph is built)
        self.gradients = {}  # variable name -> the gradient it leaves for the optimizer

    def __call__(self, grads_and_vars):
        """Rewrite the gradients; every clustered variable must be among them with a gradient,
        or the run would silently be plain SGD for it."""
        out, done = [], set()
        for grad, var in grads_and_vars:
            name = variable_name(var)
            if grad is not None and name in self.kernels:
                gamma = self.kernels[name]
                decay = (self.weight_decay if np.array_equal(gamma, np.eye(len(gamma)))
                         else self.clustered_weight_decay)
                grad = _apply(grad, var, gamma, decay, self.strength)
                done.add(name)
            elif grad is not None and name in self.vectors:
                grad = _apply(grad, var, self.vectors[name], 0.0, self.bn_strength)
                done.add(name)
            elif grad is not None and name in self.others:
                matrix, axis = self.others[name]
                grad = _apply(grad, var, matrix, 0.0, self.strength, axis)
                done.add(name)
            out.append((grad, var))
            self.gradients[name] = grad
        left_out = sorted((set(self.kernels) | set(self.vectors) | set(self.others)) - done)
        if left_out:
            raise ValueError('the centripetal handler found no gradient for %d clustered variables '
                             '(%s): the clusters do not belong to this graph'
                             % (len(left_out), ', '.join(left_out[:5])))
        merged = sum(not np.array_equal(g, np.eye(len(g))) for g in self.kernels.values())
        self.summary = ('C-SGD: the handler merged %d conv kernels and %d BN gamma/beta vectors; '
                        '%d kernels got their weight decay through the decay matrix'
                        % (merged, len(self.vectors), len(self.kernels)))
        if self.others:
            self.summary += ('; %d biases and depthwise kernels merged with their layers'
                             % len(self.others))
        return out


def cluster_deviation(weights, trace, layer_clusters, bn_clusters):
    """Largest |difference| between a cluster member and its survivor over all conv kernels and
    BN vectors (gamma, beta, moving mean, moving variance): 0 when C-SGD has converged."""
    worst = 0.0
    for layer, clusters in trace.expand_to_groups(layer_clusters).items():
        kernel = weights[trace.convs[layer].kernel]
        for cluster in clusters:
            worst = max(worst, float(np.abs(kernel[..., cluster] -
                                            kernel[..., [min(cluster)]]).max()))
    for bn in trace.bns:
        for role in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            vector = weights['%s/%s' % (bn.scope, role)]
            for cluster in bn_clusters[bn.index]:
                worst = max(worst, float(np.abs(vector[cluster] - vector[min(cluster)]).max()))
    expanded = trace.expand_to_groups(layer_clusters)
    kernels = {trace.convs[l].kernel for l in expanded}
    for layer, clusters in expanded.items():
        for slot in trace.slots[layer]:  # biases, depthwise kernels
            if slot.kind != SELECT or slot.var in kernels or slot.var not in weights or \
                    trace.variables[slot.var].role not in ('kernel', 'bias'):
                continue
            array = np.moveaxis(weights[slot.var], slot.axis, 0)
            for cluster in clusters:
                positions = [slot.offset + c for c in cluster]
                worst = max(worst, float(np.abs(array[positions] - array[positions[:1]]).max()))
    return worst


class ClusterSpreadHook(TrainHook):
    """Monitors the collapse: TensorBoard scalars `max_cluster_deviation` (largest |member -
    survivor| over clustered kernels and BN gamma/beta) and `sum_sq_cluster_diff`, the deviation on
    the progress line, and its history at step 0 and every progress line's step, `history`
    ([[step, deviation], ...]), kept with the checkpoints so that a resumed run continues it."""

    def __init__(self, handler):
        self.handler = handler
        self.history = []

    def begin(self, trainer):
        deviations, squares = [], []
        matrices = {name: (gamma, -1) for name, gamma in self.handler.kernels.items()}
        matrices.update((name, (gamma, -1)) for name, gamma in self.handler.vectors.items())
        matrices.update(self.handler.others)
        for name, (gamma, axis) in matrices.items():
            var = trainer.builder.variables[name]
            survivor = np.argmax(gamma > 0, axis=0)  # first (smallest) member of each channel's cluster
            if np.array_equal(survivor, np.arange(len(survivor))):
                continue
            diff = var - tf.gather(var, survivor, axis=axis % len(var.shape))
            deviations.append(tf.reduce_max(tf.abs(diff)))
            squares.append(tf.reduce_sum(tf.square(diff)))
        self.deviation = tf.reduce_max(tf.stack(deviations)) if deviations else tf.constant(0.0)
        tf.summary.scalar('max_cluster_deviation', self.deviation)
        tf.summary.scalar('sum_sq_cluster_diff', tf.add_n(squares) if squares else tf.constant(0.0))
        self.every = trainer.config.display_every
        self.num_steps = trainer.config.num_steps

    def after_create_session(self, session, step):
        self.session = session
        if step == 0 and not self.history:
            self._record(0)

    def _record(self, step):
        value = float(self.session.run(self.deviation))
        self.history.append([int(step), value])
        return value

    def after_step(self, step, values):
        self.step = step
        if (self.every and step % self.every == 0) or step == self.num_steps:
            self._record(step)
        return False

    def state(self):
        # None while empty, so a checkpoint of an older version (no state) still resumes
        return {'history': self.history} if self.history else None

    def load_state(self, state):
        self.history = [list(h) for h in state['history']]

    def status(self):
        recorded = self.history and self.history[-1][0] == getattr(self, 'step', None)
        return 'cluster deviation %.2e' % (self.history[-1][1] if recorded else
                                           self.session.run(self.deviation))
