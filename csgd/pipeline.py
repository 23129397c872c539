"""C-SGD's commands as stages over files in the working directory, as in the original: base training
(new), evaluation, the magnitude baseline (prune by L1, finetune) and C-SGD (cluster, train with the
centripetal rule, trim with no finetuning). A stage whose output file exists is not redone."""

import os
import pickle

import numpy as np

from csgd import clustering
from csgd.centripetal import CentripetalHandler, ClusterSpreadHook, cluster_deviation
from tf_benchmarks import flops, hdf5_io, input_pipeline
from tf_benchmarks.errors import UserError
from tf_benchmarks.evaluation import evaluate_file
from tf_benchmarks.logs import cur_time, log_has_line, log_important
from tf_benchmarks.models.densenet_model import BLOCKS_PER_STAGE
from tf_benchmarks.surgery import apply_surgery
from tf_benchmarks.trainer import TrainConfig, Trainer, kernels_only, train_to_file

PRETRAINED = 'dc40_scratch_savedweights.hdf5'
SCRATCH_TRAIN_DIR = 'dc40_scratch_train'
EVAL_RECORDS = 'origin_dc40_eval_record.txt'
BIAS_ONLY = ('bias',)  # the C-SGD code doubles only `bias` gradients (fc10/bias)


def steps_per_epoch(num_examples, batch_size):
    """The original's integer steps per epoch (50000 // 64 = 781)."""
    return num_examples // batch_size


def _config(s, epochs, lr_values, fractions, num_examples, **kwargs):
    """The original's step arithmetic: total epochs * N // batch, boundaries at epoch * (N // batch)
    (paper: 468750 steps, boundaries 156200 / 312400 / 390500)."""
    per_epoch = steps_per_epoch(num_examples, s.batch_size)
    return TrainConfig(num_steps=int(epochs * num_examples) // s.batch_size,
                       batch_size=s.batch_size, lr_values=lr_values,
                       lr_boundaries=[int(round(f * epochs, 6) * per_epoch) for f in fractions],
                       display_every=s.display_every, checkpoint_every=s.checkpoint_every,
                       snapshot_every=s.snapshot_steps, double_gradient_keywords=BIAS_ONLY,
                       precision=s.precision, **kwargs)


def with_stage_widths(deps, spec):
    """Replace the incremental widths of each stage of a DenseNet `deps` by 'a-b-c'."""
    try:
        widths = [int(x) for x in spec.split('-')]
    except ValueError:
        widths = []
    if len(widths) != 3 or min(widths) < 1:
        raise UserError('--target_deps takes three positive widths like 3-3-3, got %r' % (spec,))
    deps = list(deps)
    for stage, width in enumerate(widths):
        first = 1 + stage * (BLOCKS_PER_STAGE + 1)
        for layer in range(first, first + BLOCKS_PER_STAGE):
            if width > deps[layer]:
                raise UserError('--target_deps %s is wider than the model (%d filters in stage %d)'
                                % (spec, deps[layer], stage + 1))
            deps[layer] = width
    return tuple(deps)


def record_line(path, result, comment=''):
    """The original record line: time, file, top1, top5, mean loss, comment (space-separated)."""
    return '%s %s %.5f %.5f %.6f %s' % (cur_time(), path, result.top1, result.top5, result.loss,
                                         comment)


def train_base(model, s, data_dir, epochs, log=print):
    """`train`: the base DenseNet-40 -> dc40_scratch_savedweights.hdf5 (resumes if stopped)."""
    def make_config(num_examples):
        return _config(s, epochs, s.train_lr_values, s.train_lr_epoch_fractions, num_examples,
                       weight_decay=s.weight_decay, l2_filter=kernels_only)
    return train_to_file(model, s.deps, data_dir, make_config, SCRATCH_TRAIN_DIR, PRETRAINED, log)


def eval_file(model, path, data_dir, batch_size, log=print):
    """`eval FILE`: rebuild from the file's deps, evaluate, append to origin_dc40_eval_record.txt."""
    weight_file = hdf5_io.read_hdf5(path)
    result = evaluate_file(model, weight_file, data_dir, batch_size, path)
    deps = list(weight_file.deps or model.default_deps)
    log('precision @ 1 = %.4f recall @ 5 = %.4f [%d examples] mean loss = %.4f  deps %s  FLOPs %d'
        % (result.top1, result.top5, result.num_examples, result.loss, deps,
           flops.count_flops(model, deps)))
    log_important(record_line(path, result), EVAL_RECORDS)
    return result


class _Stages:
    """Shared by both methods: the init file, the target widths, logging into an important log."""

    def __init__(self, model, settings, data_dir, init_hdf5, log_file, log=print):
        self.model = model
        self.s = settings
        self.data_dir = data_dir
        self.log_file = log_file
        self.print = log
        self.init_hdf5 = init_hdf5
        if not os.path.exists(init_hdf5):
            raise UserError('%s does not exist; run `csgd_standalone.py train` first or pass '
                            '--init_hdf5 (an original std_dc40_9382.hdf5 also loads)' % init_hdf5)
        self.init = hdf5_io.read_hdf5(init_hdf5)
        self.origin_deps = model.check_deps(self.init.deps or model.default_deps)
        self.target_deps = with_stage_widths(self.origin_deps, settings.target_deps)
        self.trace = model.trace(self.origin_deps)
        self.num_examples = input_pipeline.RecordData(data_dir).num_examples

    def log(self, message):
        log_important(message, self.log_file)

    def logged(self, marker):
        return log_has_line(self.log_file, lambda line: marker in line)

    def eval_and_log(self, path, comment, weight_file=None):
        """Evaluate and append the record line, unless a line with this comment exists already."""
        if self.logged(comment):
            return None
        weight_file = weight_file or hdf5_io.read_hdf5(path)
        result = evaluate_file(self.model, weight_file, self.data_dir, self.s.eval_batch_size,
                               path)
        self.log(record_line(path, result, comment))
        return result

    def log_structure(self):
        if self.logged('target structure %s:' % self.s.target_deps):
            return
        before = flops.count_flops(self.model, self.origin_deps)
        after = flops.count_flops(self.model, self.target_deps)
        self.log('target structure %s: FLOPs %d -> %d (%.2f%% removed), params %d -> %d, deps %s'
                 % (self.s.target_deps, before, after, 100 * (1 - after / before),
                    flops.count_params(self.model, self.origin_deps),
                    flops.count_params(self.model, self.target_deps), list(self.target_deps)))

    def train_config(self, **kwargs):
        return _config(self.s, self.s.max_epochs, self.s.lr_values, self.s.lr_epoch_fractions,
                       self.num_examples, **kwargs)


class MagnitudePruning(_Stages):
    """`magnitude1`: L1-magnitude pruning of every incremental layer to the target width, then
    finetuning with the C-SGD schedule."""

    def __init__(self, model, settings, data_dir, init_hdf5, prefix='magnitude1', log=print):
        super().__init__(model, settings, data_dir, init_hdf5,
                         'dc40_%s_important_log.txt' % prefix, log)
        self.prefix = prefix
        self.eqcls_file = 'dc40_equivalent_eqcls_%s.npy' % prefix
        self.pruned_file = 'dc40_%s_prunedweights.hdf5' % prefix
        self.trained_file = '%s_trained.hdf5' % prefix

    def plans(self):
        return {layer: clustering.magnitude_plan(self.init.weights[conv.kernel],
                                                 self.target_deps[layer], self.s.magnitude_variant)
                for layer, conv in enumerate(self.trace.convs)}

    def run(self):
        self.log_structure()
        if not os.path.exists(self.pruned_file):
            plans = self.plans()
            _save_clusters(self.eqcls_file, plans)
            weights, deps = apply_surgery(self.trace, self.init.weights, plans)
            hdf5_io.save_hdf5(self.pruned_file, weights, deps)
            self.log('%s (%s variant): pruned %s to %s, saved to %s'
                     % (self.prefix, self.s.magnitude_variant, self.init_hdf5, list(deps),
                        self.pruned_file))
        self.eval_and_log(self.pruned_file, 'eval after magnitude pruning, before finetuning')
        if not os.path.exists(self.trained_file):
            pruned = hdf5_io.read_hdf5(self.pruned_file)
            clean = self.s.magnitude_variant == 'clean'
            config = self.train_config(weight_decay=self.s.weight_decay, l2_filter=kernels_only,
                                       augmentation=clean, shuffle=clean)
            result = Trainer(self.model, pruned.deps, self.data_dir, config, self.prefix + '_train',
                             init_weights=pruned.weights, log=self.print).run()
            hdf5_io.save_hdf5(self.trained_file, result.weights, pruned.deps)
            self.log('%s finetuning completed. save to: %s' % (self.prefix, self.trained_file))
        self.eval_and_log(self.trained_file, 'eval after finetuning')
        return self.trained_file


class CentripetalSGD(_Stages):
    """`csgd1`: clusters -> C-SGD training -> trimming (one iteration, schedule_vector=[1])."""

    def __init__(self, model, settings, data_dir, init_hdf5, prefix='csgd1', log=print):
        super().__init__(model, settings, data_dir, init_hdf5,
                         'dc40_%s_important_log.txt' % prefix, log)
        self.prefix = 'dc40_%s_itr0' % prefix
        self.eqcls_file = self.prefix + '_eqcls.npy'
        self.sted_file = self.prefix + '_sted.hdf5'
        self.pruned_file = self.prefix + '_prunedweights.hdf5'
        self.train_dir = self.prefix + '_train'

    def clusters(self):
        """Cluster every conv layer (cached in the eqcls file, which is re-saved after each layer)."""
        plans = _load_clusters(self.eqcls_file) if os.path.exists(self.eqcls_file) else {}
        if len(plans) < len(self.trace.convs):
            self.log('I calculate eqcls by %s' % self.s.cluster_method)
        for layer, conv in enumerate(self.trace.convs):
            if layer in plans:
                continue
            kernel, target = self.init.weights[conv.kernel], self.target_deps[layer]
            if self.s.cluster_method == 'kmeans':
                plans[layer] = clustering.kmeans_clusters(kernel, target, self.s.kmeans_seed,
                                                          self.s.kmeans_n_init)
            elif self.s.cluster_method == 'even':
                plans[layer] = clustering.even_clusters(conv.out_channels, target)
            else:
                plans[layer] = clustering.biased_clusters(conv.out_channels, target)
            _save_clusters(self.eqcls_file, plans)
        return plans

    def run(self):
        self.log_structure()
        if not self.logged('CSGD: start itr 0'):
            self.log('CSGD: start itr 0, start from %s, st to %s, cur remain deps %s, next remain '
                     'deps %s, cur train dir %s' % (self.init_hdf5, self.sted_file,
                                                    list(self.origin_deps), list(self.target_deps),
                                                    self.train_dir))
        plans = self.clusters()
        bn_plans = clustering.bn_channel_clusters(self.trace, plans)
        self.eval_and_log(self.init_hdf5, 'eval at itr 0, cur remain deps %s'
                          % list(self.origin_deps), self.init)
        if not os.path.exists(self.sted_file):
            handler = CentripetalHandler(self.trace, plans, bn_plans, self.s.weight_decay,
                                         self.s.centri_strength)
            config = self.train_config(weight_decay=0.0)
            result = Trainer(self.model, self.origin_deps, self.data_dir, config, self.train_dir,
                             init_weights=self.init.weights, grad_handler=handler,
                             hooks=[ClusterSpreadHook(handler)], log=self.print).run()
            hdf5_io.save_hdf5(self.sted_file, result.weights, self.origin_deps)
            self.log('C-SGD train completed. save to: %s' % self.sted_file)
        sted = hdf5_io.read_hdf5(self.sted_file)
        if not self.logged('max difference within clusters'):
            self.log('max difference within clusters after C-SGD: %.3g (kernels and BN vectors)'
                     % cluster_deviation(sted.weights, self.trace, plans, bn_plans))
        self.eval_and_log(self.sted_file, 'eval before trimming at itr 0, cur remain deps %s'
                          % list(self.origin_deps), sted)
        if not os.path.exists(self.pruned_file):
            weights, deps = apply_surgery(self.trace, sted.weights, plans)
            hdf5_io.save_hdf5(self.pruned_file, weights, deps)
            self.log('finished trimming at itr 0, save to %s' % self.pruned_file)
        self.eval_and_log(self.pruned_file, 'eval after trimming at itr 0, cur remain deps %s'
                          % list(self.target_deps))
        return self.pruned_file


def _save_clusters(path, plans):
    """The original's eqcls .npy: a pickled dict {layer: [[filter indices], ...]}."""
    tmp = hdf5_io.atomic_path(path)
    with open(tmp, 'wb') as f:
        np.save(f, {k: [list(map(int, c)) for c in v] for k, v in plans.items()},
                allow_pickle=True)
    os.replace(tmp, path)


def _load_clusters(path):
    try:
        plans = np.load(path, allow_pickle=True).item()
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise UserError('%s is not a cluster file (%s); delete it to recompute the clusters'
                        % (path, e))
    return {int(k): [list(map(int, c)) for c in v] for k, v in plans.items()}
