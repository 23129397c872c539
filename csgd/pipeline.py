"""C-SGD's commands over files in the working directory, as in the original: base training (new),
evaluation, the magnitude baseline (prune by L1, finetune) and C-SGD (cluster, train with the
centripetal rule, trim with no finetuning), run as stages of the stage runner (run.json)."""

import functools
import os

from csgd import clustering
from csgd.clusters_file import load_clusters, save_clusters
from csgd.centripetal import CentripetalHandler, ClusterSpreadHook, cluster_deviation
from tf_benchmarks import flops, hdf5_io, input_pipeline, records
from tf_benchmarks.errors import UserError
from tf_benchmarks.evaluation import evaluate_file
from tf_benchmarks.logs import LogBook, cur_time, log_important
from tf_benchmarks.stages import Stage, StageRunner, file_digest
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


def train_base(model, s, data_dir, epochs, restart_from=None, log=print):
    """`train`: the base DenseNet-40 -> dc40_scratch_savedweights.hdf5 (one stage)."""
    model.check_deps(s.deps)  # bad widths or data stop before run.json
    data = input_pipeline.RecordData(data_dir)

    def run():
        config = _config(s, epochs, s.train_lr_values, s.train_lr_epoch_fractions,
                         data.num_examples, weight_decay=s.weight_decay, l2_filter=kernels_only)
        train_to_file(model, s.deps, data, config, SCRATCH_TRAIN_DIR, PRETRAINED, log=log)
    settings = dict(model=model.name, deps=s.deps, epochs=epochs, batch_size=s.batch_size,
                    lr_values=s.train_lr_values, lr_epoch_fractions=s.train_lr_epoch_fractions,
                    weight_decay=s.weight_decay, precision=s.precision,
                    **records.data_settings(data_dir))
    StageRunner([Stage('train', settings, run, outputs=[PRETRAINED],
                       work_dirs=[SCRATCH_TRAIN_DIR])], restart_from=restart_from, log=log).run()
    return PRETRAINED


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
    """Shared by both methods: the init file, the target widths, the important log, the stage
    settings, and running the stages."""

    def __init__(self, model, settings, data_dir, init_hdf5, log_file, restart_from=None,
                 partial_start=False, log=print):
        self.model = model
        self.s = settings
        self.data_dir = data_dir
        self.log_file = log_file
        self.print = log
        self.init_hdf5 = init_hdf5
        self.restart_from = restart_from
        self.partial_start = partial_start
        self.logs = LogBook([log_file])
        if not os.path.exists(init_hdf5):
            raise UserError('%s does not exist; run `csgd_standalone.py train` first or pass '
                            '--init_hdf5 (an original std_dc40_9382.hdf5 also loads)' % init_hdf5)
        self.init = hdf5_io.read_hdf5(init_hdf5)
        self.origin_deps = model.check_deps(self.init.deps or model.default_deps)
        self.target_deps = with_stage_widths(self.origin_deps, settings.target_deps)
        self.trace = model.trace(self.origin_deps)
        hdf5_io.check_weights_fit(self.trace.shapes, self.init.weights, init_hdf5, partial_start)
        self.num_examples = input_pipeline.RecordData(data_dir).num_examples

    def log(self, message):
        log_important(message, self.log_file)

    def common_settings(self):
        return dict(model=self.model.name, init=self.init_hdf5,
                    init_sha256=file_digest(self.init_hdf5), target_deps=self.s.target_deps,
                    **records.data_settings(self.data_dir))

    def train_settings(self):
        s = self.s
        return dict(epochs=s.max_epochs, batch_size=s.batch_size, lr_values=s.lr_values,
                    lr_epoch_fractions=s.lr_epoch_fractions, weight_decay=s.weight_decay,
                    precision=s.precision, partial_start=self.partial_start)

    def run_stages(self, stages):
        StageRunner(stages, self.logs, restart_from=self.restart_from, log=self.print).run()

    def eval_and_log(self, path, comment, weight_file=None):
        weight_file = weight_file or hdf5_io.read_hdf5(path)
        result = evaluate_file(self.model, weight_file, self.data_dir, self.s.eval_batch_size,
                               path)
        self.log(record_line(path, result, comment))
        return result

    def log_structure(self):
        before = flops.count_flops(self.model, self.origin_deps)
        after = flops.count_flops(self.model, self.target_deps)
        self.log('target structure %s: FLOPs %d -> %d (%.2f%% removed), params %d -> %d, deps %s'
                 % (self.s.target_deps, before, after, 100 * (1 - after / before),
                    flops.count_params(self.model, self.origin_deps),
                    flops.count_params(self.model, self.target_deps), list(self.target_deps)))

    def train_config(self, **kwargs):
        return _config(self.s, self.s.max_epochs, self.s.lr_values, self.s.lr_epoch_fractions,
                       self.num_examples, **kwargs)

    def trainer(self, deps, config, train_dir, init_weights, init_source, **kwargs):
        return Trainer(self.model, deps, self.data_dir, config, train_dir,
                       init_weights=init_weights, init_source=init_source,
                       partial_init=self.partial_start, logs=self.logs, log=self.print, **kwargs)


class MagnitudePruning(_Stages):
    """`magnitude1`: L1-magnitude pruning of every incremental layer to the target width, then
    finetuning with the C-SGD schedule; stages `<mode>.prune` and `<mode>.finetune`."""

    def __init__(self, model, settings, data_dir, init_hdf5, prefix='magnitude1', **kwargs):
        super().__init__(model, settings, data_dir, init_hdf5,
                         'dc40_%s_important_log.txt' % prefix, **kwargs)
        self.prefix = prefix
        self.eqcls_file = 'dc40_equivalent_eqcls_%s.json' % prefix
        self.pruned_file = 'dc40_%s_prunedweights.hdf5' % prefix
        self.trained_file = '%s_trained.hdf5' % prefix
        self.train_dir = prefix + '_train'

    def plans(self):
        return {layer: clustering.magnitude_plan(self.init.weights[conv.kernel],
                                                 self.target_deps[layer], self.s.magnitude_variant)
                for layer, conv in enumerate(self.trace.convs)}

    def run(self):
        common = dict(self.common_settings(), variant=self.s.magnitude_variant)
        self.run_stages([
            Stage(self.prefix + '.prune', common, self.prune,
                  outputs=[self.eqcls_file, self.pruned_file], inputs=[self.init_hdf5]),
            Stage(self.prefix + '.finetune', dict(common, **self.train_settings()), self.finetune,
                  outputs=[self.trained_file], inputs=[self.pruned_file],
                  work_dirs=[self.train_dir])])
        return self.trained_file

    def prune(self):
        self.log_structure()
        plans = self.plans()
        save_clusters(self.eqcls_file, plans)
        weights, deps = apply_surgery(self.trace, self.init.weights, plans)
        hdf5_io.save_hdf5(self.pruned_file, weights, deps)
        self.log('%s (%s variant): pruned %s to %s, saved to %s'
                 % (self.prefix, self.s.magnitude_variant, self.init_hdf5, list(deps),
                    self.pruned_file))
        self.eval_and_log(self.pruned_file, 'eval after magnitude pruning, before finetuning')

    def finetune(self):
        pruned = hdf5_io.read_hdf5(self.pruned_file)
        clean = self.s.magnitude_variant == 'clean'
        config = self.train_config(weight_decay=self.s.weight_decay, l2_filter=kernels_only,
                                   augmentation=clean, shuffle=clean)
        result = self.trainer(pruned.deps, config, self.train_dir, pruned.weights,
                              self.pruned_file).run()
        hdf5_io.save_hdf5(self.trained_file, result.weights, pruned.deps)
        self.log('%s finetuning completed. save to: %s' % (self.prefix, self.trained_file))
        self.eval_and_log(self.trained_file, 'eval after finetuning')


class CentripetalSGD(_Stages):
    """`csgd1`: clusters -> C-SGD training -> trimming (one iteration, schedule_vector=[1]); stages
    `<mode>.clusters`, `<mode>.train` and `<mode>.trim`."""

    def __init__(self, model, settings, data_dir, init_hdf5, prefix='csgd1', clusters_file=None,
                 **kwargs):
        super().__init__(model, settings, data_dir, init_hdf5,
                         'dc40_%s_important_log.txt' % prefix, **kwargs)
        self.clusters_file = clusters_file
        self.mode = prefix
        self.prefix = 'dc40_%s_itr0' % prefix
        self.eqcls_file = self.prefix + '_eqcls.json'
        self.sted_file = self.prefix + '_sted.hdf5'
        self.pruned_file = self.prefix + '_prunedweights.hdf5'
        self.train_dir = self.prefix + '_train'

    def run(self):
        s = self.s
        common = self.common_settings()
        clusters = dict(common, cluster_method=s.cluster_method)
        if self.clusters_file:
            if not os.path.exists(self.clusters_file):
                raise UserError('--clusters_file %s does not exist' % self.clusters_file)
            clustering.check_clusters(load_clusters(self.clusters_file), self.origin_deps,
                                      self.target_deps, self.clusters_file)
            clusters = dict(common, clusters_file=self.clusters_file,
                            clusters_file_sha256=file_digest(self.clusters_file))
        elif s.cluster_method == 'kmeans':
            clusters.update(kmeans_seed=s.kmeans_seed, kmeans_n_init=s.kmeans_n_init)
        self.run_stages([
            Stage(self.mode + '.clusters', clusters, self.cluster_stage,
                  outputs=[self.eqcls_file], inputs=[self.init_hdf5]),
            Stage(self.mode + '.train', dict(clusters, centri_strength=s.centri_strength,
                                             **self.train_settings()),
                  self.train_stage, outputs=[self.sted_file],
                  inputs=[self.init_hdf5, self.eqcls_file], work_dirs=[self.train_dir]),
            Stage(self.mode + '.trim', {}, self.trim_stage, outputs=[self.pruned_file],
                  inputs=[self.sted_file, self.eqcls_file])])
        return self.pruned_file

    def clusters(self):
        """Cluster every conv layer; the eqcls file is re-saved after each layer, so a stopped
        clustering continues with the next layer."""
        if self.clusters_file:
            plans = load_clusters(self.clusters_file)
            clustering.check_clusters(plans, self.origin_deps, self.target_deps,
                                      self.clusters_file)
            save_clusters(self.eqcls_file, plans)
            return plans
        plans = self.load_plans(partial=True) if os.path.exists(self.eqcls_file) else {}
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
            save_clusters(self.eqcls_file, plans)
        return plans

    def load_plans(self, partial=False):
        """The clusters file, checked against the model's and the target's widths."""
        plans = load_clusters(self.eqcls_file)
        clustering.check_clusters(plans, self.origin_deps, self.target_deps, self.eqcls_file,
                                  partial)
        return plans

    def cluster_stage(self):
        self.log_structure()
        self.log('CSGD: start itr 0, start from %s, st to %s, cur remain deps %s, next remain '
                 'deps %s, cur train dir %s' % (self.init_hdf5, self.sted_file,
                                                list(self.origin_deps), list(self.target_deps),
                                                self.train_dir))
        self.log('I use the eqcls of %s' % self.clusters_file if self.clusters_file else
                 'I calculate eqcls by %s' % self.s.cluster_method)
        self.clusters()
        self.eval_and_log(self.init_hdf5, 'eval at itr 0, cur remain deps %s'
                          % list(self.origin_deps), self.init)

    def csgd_trainer(self, plans, bn_plans):
        """The C-SGD Trainer: weight decay only through the handler's decay matrix (the config's
        is 0, so it is applied once), the centripetal merge, the collapse monitor."""
        handler = CentripetalHandler(self.trace, plans, bn_plans, self.s.weight_decay,
                                     self.s.centri_strength)
        trainer = self.trainer(self.origin_deps, self.train_config(weight_decay=0.0),
                               self.train_dir, self.init.weights, self.init_hdf5,
                               grad_handler=handler, hooks=[ClusterSpreadHook(handler)])
        return trainer, handler

    def train_stage(self):
        plans = self.load_plans()
        bn_plans = clustering.bn_channel_clusters(self.trace, plans)
        trainer, handler = self.csgd_trainer(plans, bn_plans)
        result = trainer.run()
        hdf5_io.save_hdf5(self.sted_file, result.weights, self.origin_deps)
        self.log(handler.summary)
        self.log('C-SGD train completed. save to: %s' % self.sted_file)
        self.log('max difference within clusters after C-SGD: %.3g (kernels and BN vectors)'
                 % cluster_deviation(result.weights, self.trace, plans, bn_plans))
        self.eval_and_log(self.sted_file, 'eval before trimming at itr 0, cur remain deps %s'
                          % list(self.origin_deps))

    def trim_stage(self):
        sted = hdf5_io.read_hdf5(self.sted_file)
        weights, deps = apply_surgery(self.trace, sted.weights, self.load_plans())
        hdf5_io.save_hdf5(self.pruned_file, weights, deps)
        self.log('finished trimming at itr 0, save to %s' % self.pruned_file)
        self.eval_and_log(self.pruned_file, 'eval after trimming at itr 0, cur remain deps %s'
                          % list(self.target_deps))
