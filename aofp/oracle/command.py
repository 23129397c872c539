"""`oracle`: how well AOFP's search approximates oracle pruning, layer by layer: exact single-filter
oracle scores on test batches, AOFP's accumulated estimate from the search graph, and the kernel L1
and |BN gamma| baselines, compared and written as a table, `oracle_<model>.json` and one PNG per layer.

Oracle (weights frozen, BN in inference mode, the first N test batches): for every filter f of a
target layer, (a) AOFP's metric with f alone dropped (the consumers' relative squared output error,
from the masked graph's score paths) and (b) the increase of the mean cross-entropy with f removed
(the base mask zeroed at f, which computes exactly what the physically pruned model does). AOFP's
estimate: K steps of the search's own graph (`prune`'s multi-path graph, BN on batch statistics) on
the training stream with frozen weights, random halves dropped by the search's own state machine;
each filter's score is its mean metric over the steps that dropped it. The oracle ranking is greedy
and single-filter: filters are scored alone, so "the oracle's k" is not the best set of k.
"""

import json
import os
import time

import numpy as np

from aofp.oracle import compare as oracle_compare
from aofp.masked_builder import MaskedConvNetBuilder
from aofp.pipeline import check_target_layers
from aofp.search import DROP_SEED, AofpSearch
from tf_benchmarks.pruning.criteria import group_gamma, group_l1
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.data import input_pipeline, records
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.engine.train_config import DEFAULT_SEED, derived_seed
from tf_benchmarks.core.errors import UserError, corrupt_record_error
from tf_benchmarks.runs.logs import format_duration
import tensorflow.compat.v1 as tf
from tf_benchmarks.files.atomic import file_digest, write_all
from tf_benchmarks.engine.weights import key_variables, load_weights

FORMAT = 'aofp-oracle-v1'
NOTE = ('The oracle ranking is greedy and single-filter: every filter is scored by removing it '
        'alone, so the oracle\'s k least important filters are not necessarily the best set of k.')


def json_path(model_name):
    return 'oracle_%s.json' % model_name


def png_path(model_name, layer):
    return 'oracle_%s_layer%d.png' % (model_name, layer)


# -- inputs ----------------------------------------------------------------------------------------
def load_test_batches(data_dir, batch_size, num_batches):
    """The first `num_batches` batches of the test split, in file order, as ([N,32,32,3] float32 in
    [-1, 1], [N] int32) pairs (fewer where the split is shorter)."""
    path = records.split_path(data_dir, 'test')
    batches = []
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        iterator = tf.data.make_one_shot_iterator(input_pipeline.eval_dataset(path, batch_size))
        batch = iterator.get_next()
        with tf.Session(config=tf_session.session_config()) as sess:
            for _ in range(num_batches):
                try:
                    batches.append(sess.run(batch))
                except tf.errors.OutOfRangeError:
                    break
                except tf.errors.DataLossError as e:
                    raise corrupt_record_error(path, e)
    if not batches:
        raise UserError('%s holds no images' % path)
    return batches


def read_weights(model, path):
    """(deps, weights by graph name) of a plain weights file that fits `model` exactly."""
    weight_file = hdf5_io.read_hdf5(path)
    if weight_file.masks:
        raise UserError('%s carries AOFP masks (a tuned file); run the oracle on a plain file, such '
                        'as its physically pruned ..._prunedweights.hdf5' % path)
    deps = model.file_deps(weight_file)
    shapes = model.trace(deps).shapes
    hdf5_io.check_weights_fit(shapes, weight_file.weights, path)
    weights, _ = hdf5_io.match_weights(shapes, weight_file.weights)
    return deps, weights


def check_layers(model, deps, layers):
    """The target layers (group roots, see `prune --target_layers`), each with 2+ filters."""
    layers = check_target_layers(model, layers, '--layers')
    for layer in layers:
        if deps[layer] < 2:
            raise UserError('layer %d has %d filter; there is nothing to rank' % (layer, deps[layer]))
    return layers


# -- baselines -------------------------------------------------------------------------------------
# -- the oracle: exact scores on fixed test batches --------------------------------------------------
class OracleGraph:
    """The masked multi-path graph in inference mode over fixed batches: the mean loss with some
    filters removed (base masks) and AOFP's metric with some filters dropped (score paths)."""

    def __init__(self, model, deps, weights, layers, batches):
        self.layers = list(layers)
        self.deps = list(deps)
        self.batches = batches
        self.num_images = int(sum(len(labels) for _, labels in batches))
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(0)
            self.images = tf.placeholder(tf.float32, [None, 32, 32, 3])
            self.labels = tf.placeholder(tf.int32, [None])
            self.builder = MaskedConvNetBuilder(self.images, False, self.layers, search=True)
            logits = model.build(self.builder, deps).tensor
            self.loss_sum = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=self.labels, logits=logits))
            self.metrics = [self.builder.metrics[t] for t in self.layers]
            variables = key_variables(self.builder.trace)
        self.session = tf.Session(graph=self.graph, config=tf_session.session_config())
        load_weights(self.session, variables, weights, 'weights')

    def _feeds(self, extra):
        for images, labels in self.batches:
            feed = {self.images: images, self.labels: labels}
            feed.update(extra)
            yield feed

    def loss(self, removed=None):
        """Mean cross-entropy over the batches with `removed` ({layer: filters}) masked out."""
        extra = {}
        for layer, filters in (removed or {}).items():
            mask = np.ones(self.deps[layer], np.float32)
            mask[list(filters)] = 0.0
            extra[self.builder.base_masks[layer]] = mask
        total = 0.0
        for feed in self._feeds(extra):
            total += float(self.session.run(self.loss_sum, feed))
        return total / self.num_images

    def metrics_with_drops(self, dropped):
        """{layer: AOFP's metric (one value per batch, as per step in the search), averaged over
        the batches weighted by their sizes} with `dropped` ({layer: filters}) dropped from each
        layer's score path (the base path is the full model)."""
        extra = {self.builder.dropped_filters[t]: np.asarray(f, np.int32)
                 for t, f in dropped.items()}
        sums = np.zeros(len(self.layers))
        for feed in self._feeds(extra):
            sums += len(feed[self.labels]) * np.asarray(self.session.run(self.metrics, feed),
                                                        dtype=np.float64)
        return dict(zip(self.layers, sums / self.num_images))

    def close(self):
        self.session.close()


class _Progress:
    def __init__(self, label, total, log, every_secs=15.0):
        self.label, self.total, self.log, self.every = label, total, log, every_secs
        self.start = self.last = time.time()

    def update(self, done, extra=''):
        now = time.time()
        if now - self.last >= self.every or done == self.total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            self.log('%s %d/%d  %.1f/s  ETA %s%s' % (self.label, done, self.total, rate,
                                                   format_duration((self.total - done) / rate
                                                                   if rate else 0), extra))


def oracle_scores(graph, log=print):
    """Full loss and {layer: {'loss_increase', 'metric'}} for every filter of every target layer,
    each filter removed alone. The metric runs drop filter j of every layer at once (score paths
    are independent); the loss runs remove one filter of one layer."""
    widths = {t: graph.deps[t] for t in graph.layers}
    full = graph.loss()
    metric = {t: np.zeros(w) for t, w in widths.items()}
    most = max(widths.values())
    progress = _Progress('oracle metric: filter index', most, log)
    for j in range(most):
        values = graph.metrics_with_drops({t: [j] for t, w in widths.items() if j < w})
        for t, w in widths.items():
            if j < w:
                metric[t][j] = values[t]
        progress.update(j + 1)
    increase = {}
    progress = _Progress('oracle loss: filter', sum(widths.values()), log)
    done = 0
    for t, w in widths.items():
        increase[t] = np.zeros(w)
        for f in range(w):
            increase[t][f] = graph.loss({t: [f]}) - full
            done += 1
            progress.update(done, '  (layer %d)' % t)
    return full, {t: {'loss_increase': increase[t], 'metric': metric[t]} for t in graph.layers}


# -- AOFP's estimate: the search graph on the training stream, frozen weights ----------------------
def _means(search):
    return [np.where(l.err_count > 0, l.err_sum / np.maximum(l.err_count, 1), np.inf)
            for l in search.layers]


def aofp_estimate(model, deps, weights, layers, data, steps, batch_size, checkpoints=(),
                  log=print, seed=DEFAULT_SEED):
    """{layer: {'estimate', 'drops', 'snapshots': {step: estimate}}} after `steps` steps of the
    search graph with frozen weights (no update, BN moving averages untouched), each step dropping a
    random half of every layer (AOFP's first half, drawn by the search's state machine with its seed).
    `data`: a data directory (its training split) or a source like input_pipeline.RecordData;
    `seed`: the run seed (--seed), which seeds the training stream and the drops as in `prune`."""
    data = input_pipeline.RecordData(data) if isinstance(data, str) else data
    layers = list(layers)
    search = AofpSearch([np.ones(deps[t], np.float32) for t in layers], batches_per_half=steps + 1,
                        metric_limit=0.0, start_step=0, flops_pruned=lambda widths: 0.0,
                        target_flops_pruned=1.0, seed=derived_seed(seed, DROP_SEED))
    snapshots = {}
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(seed)
        images, _ = data.batches(batch_size, True, True, seed)
        builder = MaskedConvNetBuilder(images, True, layers, search=True)
        model.build(builder, deps)
        metrics = [builder.metrics[t] for t in layers]
        dropped = [builder.dropped_filters[t] for t in layers]
        variables = key_variables(builder.trace)
        with tf.Session(graph=graph, config=tf_session.session_config()) as sess:
            load_weights(sess, variables, weights, 'weights')
            data.initialize(sess, 0)
            progress = _Progress('aofp estimate: step', steps, log)
            for step in range(1, steps + 1):
                feed = {p: drop for p, (_, drop) in zip(dropped, search.step_masks())}
                search.record(step, sess.run(metrics, feed))
                if step in checkpoints:
                    snapshots[step] = _means(search)
                progress.update(step)
    means = _means(search)
    return {t: {'estimate': means[i], 'drops': search.layers[i].err_count.copy(),
                'snapshots': {s: v[i] for s, v in sorted(snapshots.items())}}
            for i, t in enumerate(layers)}


def convergence_steps(steps):
    """Steps at which the estimate's agreement with the oracle is recorded: K/8, K/4, K/2, K."""
    return sorted({s for s in (steps // 8, steps // 4, steps // 2, steps) if s >= 1})


# -- the whole comparison ---------------------------------------------------------------------------
def _plain(value):
    """JSON-ready: arrays -> lists, non-finite floats -> None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value


def compare(model, deps, weights, layers, batches, data, steps, batch_size, log=print,
            seed=DEFAULT_SEED):
    """Every score and comparison of the target layers, as a JSON-ready dict (see run_oracle)."""
    trace = model.trace(deps)
    checkpoints = convergence_steps(steps)
    log('AOFP estimate: %d steps of batch %d on the training split, layers %s'
        % (steps, batch_size, layers))
    estimate = aofp_estimate(model, deps, weights, layers, data, steps, batch_size, checkpoints,
                             log, seed)
    graph = OracleGraph(model, deps, weights, layers, batches)
    try:
        log('oracle: %d test images, BN in inference mode, %d filters'
            % (graph.num_images, sum(deps[t] for t in layers)))
        full, oracle = oracle_scores(graph, log)
        result_layers = {}
        for t in layers:
            loss, metric = oracle[t]['loss_increase'], oracle[t]['metric']
            baselines = {'aofp': estimate[t]['estimate'], 'l1': group_l1(trace, weights, t)}
            gamma = group_gamma(trace, weights, t)
            if gamma is not None:
                baselines['gamma'] = gamma
            log('comparing layer %d: the loss with each ranking\'s k least important filters '
                'removed together, k = %s' % (t, ', '.join(
                    str(k) for k in oracle_compare.removal_sizes(deps[t]).values())))
            comparison = oracle_compare.compare_layer(
                loss, metric, baselines,
                lambda filters, t=t: graph.loss({t: filters}) - full)
            convergence = [{'steps': s, 'spearman': {
                ref: oracle_compare.spearman(values, est)
                for ref, values in ((oracle_compare.ORACLE_LOSS, loss),
                                    (oracle_compare.ORACLE_METRIC, metric))}}
                for s, est in estimate[t]['snapshots'].items()]
            result_layers[str(t)] = dict(
                width=deps[t], members=list(trace.group_of(t).members),
                filters={'oracle_loss_increase': loss, 'oracle_metric': metric,
                         'aofp_estimate': estimate[t]['estimate'],
                         'aofp_times_dropped': estimate[t]['drops'],
                         'l1': baselines['l1'], 'gamma': gamma},
                aofp_convergence=convergence, **comparison)
    finally:
        graph.close()
    return _plain({'full_loss': full, 'test_images': graph.num_images, 'layers': result_layers})


def run_oracle(model, weights_path, data_dir, layers=None, num_batches=2, test_batch_size=500,
               steps=40, batch_size=64, out_dir='.', log=print, seed=DEFAULT_SEED):
    """The `oracle` command: scores, comparison, console table, oracle_<model>.json and a PNG per
    layer in `out_dir`. Everything is checked before any work; outputs are written at the end,
    each to a temporary name, then all renamed. Returns the JSON-ready result."""
    from aofp.oracle import plot as oracle_plot
    if num_batches < 1:
        raise UserError('--batches must be at least 1, got %d' % num_batches)
    if steps < 1:
        raise UserError('--steps must be at least 1, got %d' % steps)
    if batch_size < 1:
        raise UserError('--batch_size must be at least 1, got %d' % batch_size)
    deps, weights = read_weights(model, weights_path)
    layers = check_layers(model, deps, layers)
    data = input_pipeline.RecordData(data_dir)  # checks the training split
    batches = load_test_batches(data_dir, test_batch_size, num_batches)
    start = time.time()
    scores = compare(model, deps, weights, layers, batches, data, steps, batch_size, log, seed)
    result = {
        'format': FORMAT, 'model': model.name, 'weights': weights_path,
        'weights_sha256': file_digest(weights_path), 'deps': list(deps), 'note': NOTE,
        'data': records.data_settings(data_dir),
        'oracle': {'test_batches': len(batches), 'test_batch_size': test_batch_size,
                   'test_images': scores['test_images'], 'bn': 'inference (moving statistics)',
                   'full_loss': scores['full_loss']},
        'aofp_estimate': {'steps': steps, 'batch_size': batch_size, 'split': 'train',
                          'data_seed': seed, 'drop_seed': derived_seed(seed, DROP_SEED),
                          'bn': 'batch statistics, as in the search'},
        'layers': scores['layers'],
    }
    for line in format_table(result):
        log(line)
    files = [(os.path.join(out_dir, png_path(model.name, int(t))),
              oracle_plot.layer_png(result, t)) for t in result['layers']]
    text = json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + '\n'
    files.append((os.path.join(out_dir, json_path(model.name)), text.encode()))
    write_all(files)
    log('wrote %s and %d plots in %.0f s' % (json_path(model.name), len(files) - 1,
                                             time.time() - start))
    return result


# -- console ----------------------------------------------------------------------------------------
def _num(value, fmt='%.3f'):
    return '-' if value is None else fmt % value


def format_table(result):
    """Per layer and estimate: Spearman with both oracle scores, the overlap of the least important
    halves with the oracle's, and the loss increase when its k least important filters go."""
    fractions = [name for name, _ in oracle_compare.FRACTIONS]
    lines = ['%s: %s; oracle on %d test images (full loss %.4f), AOFP estimate from %d steps'
             % (result['model'], result['weights'], result['oracle']['test_images'],
                result['oracle']['full_loss'], result['aofp_estimate']['steps']),
             '%-7s %-5s %-14s %9s %9s %9s  %s' % ('layer', 'width', 'ranking', 'rho(loss)',
                                                 'rho(metr)', 'half-ovl', '   '.join(
                                                     'dloss@%s' % f for f in fractions))]
    for t, layer in result['layers'].items():
        ks = ' '.join('k=%d' % layer['removal'][f]['k'] for f in fractions)
        first = True
        for name in ['oracle_loss', 'oracle_metric'] + [n for n in ('aofp', 'l1', 'gamma')
                                                        if n in layer['spearman']]:
            rho = layer['spearman'].get(name, {})
            ovl = layer['half_overlap'].get(name, {})
            removal = '  '.join('%10s' % _num(layer['removal'][f]['loss_increase'][name], '%.4f')
                                for f in fractions)
            lines.append('%-7s %-5s %-14s %9s %9s %9s  %s' % (
                ('conv%s' % t) if first else '', layer['width'] if first else '',
                'oracle (greedy)' if name == 'oracle_loss' else name,
                _num(rho.get('oracle_loss', 1.0 if name == 'oracle_loss' else None)),
                _num(rho.get('oracle_metric', 1.0 if name == 'oracle_metric' else None)),
                _num(ovl.get('oracle_loss', 1.0 if name == 'oracle_loss' else None), '%.2f'),
                removal))
            first = False
        lines.append('%-7s %-5s %s' % ('', '', '(%s)' % ks))
    lines.append(NOTE)
    return lines
