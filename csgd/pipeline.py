"""C-SGD's commands over files in the working directory, as in the original: base training (new),
evaluation and C-SGD (cluster, train with the centripetal rule, trim with no finetuning), run as
stages of the stage runner (run.json); `PruningRun`, the part C-SGD shares with the magnitude
baseline (magnitude.py)."""

import os

from csgd import clustering
from csgd.clusters_file import load_clusters, save_clusters
from csgd.centripetal import CentripetalHandler, ClusterSpreadHook, cluster_deviation
from csgd.targets import parse_target_deps
from tf_benchmarks.network import flops
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.data import sources
from tf_benchmarks.runs import results
from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy.latency import describe as describe_latency
from tf_benchmarks.engine.cut_check import CutCheck, CutVerifier, Version
from tf_benchmarks.engine.evaluation import evaluate_file
from tf_benchmarks.runs.logs import LogBook, cur_time, log_important
from tf_benchmarks.runs.stages import Stage, StageRunner
from tf_benchmarks.commands import base_modes, recipe
from tf_benchmarks.files.atomic import file_digest
from tf_benchmarks.pruning.surgery import apply_surgery
from tf_benchmarks.engine.train_config import TrainConfig, check_steps, derived_seed, kernels_only
from tf_benchmarks.engine.method import MethodBundle
from tf_benchmarks.engine.trainer import Trainer

BIAS_ONLY = ('bias',)  # the C-SGD code doubles only `bias` gradients (fc10/bias)
# Clusters count as collapsed, and their trim as one that must be exact, when no kernel or BN entry
# of a member is further than this from its survivor's (float32 rounding of weights of order 0.01
# to 1; a difference of 1e-3 still moves the logits by about a percent).
COLLAPSED = 1e-5


def steps_per_epoch(num_examples, batch_size):
    """The original's integer steps per epoch (50000 // 64 = 781)."""
    return num_examples // batch_size


def _config(s, epochs, lr_values, fractions, num_examples, **kwargs):
    """The original's step arithmetic: total epochs * N // batch, boundaries at epoch * (N // batch)
    (paper: 468750 steps, boundaries 156200 / 312400 / 390500)."""
    per_epoch = steps_per_epoch(num_examples, s.batch_size)
    return TrainConfig(num_steps=int(epochs * num_examples) // s.batch_size,
                       batch_size=s.batch_size, lr_values=recipe.scaled_lr(s, lr_values),
                       lr_boundaries=[int(round(f * epochs, 6) * per_epoch) for f in fractions],
                       display_every=s.display_every, checkpoint_every=s.checkpoint_every,
                       snapshot_every=s.snapshot_steps, precision=s.precision, seed=s.seed,
                       **recipe.optimizer_fields(s, BIAS_ONLY), **kwargs)


def kmeans_seed(s):
    """k-means' random_state: the preset's (0) at the default --seed, another for every other."""
    return derived_seed(s.seed, s.kmeans_seed)


def record_line(path, result, comment=''):
    """The original record line: time, file, top1, top5, mean loss, comment (space-separated)."""
    return '%s %s %.5f %.5f %.6f %s' % (cur_time(), path, result.top1, result.top5, result.loss,
                                         comment)


def base_config(s, epochs, num_examples):
    """The base model's recipe (new: the originals start from a pretrained file)."""
    return _config(s, epochs, s.train_lr_values, s.train_lr_epoch_fractions, num_examples,
                   weight_decay=s.weight_decay, l2_filter=kernels_only,
                   warmup_steps=int(s.train_warmup_epochs * num_examples) // s.batch_size)


def train_base(model, s, data_dir, epochs, restart_from=None, log=print):
    """`train`: the base model -> <model>_scratch_savedweights.hdf5 (one stage)."""
    settings = dict(epochs=epochs, batch_size=s.batch_size, lr_values=s.train_lr_values,
                    lr_epoch_fractions=s.train_lr_epoch_fractions,
                    warmup_epochs=s.train_warmup_epochs, weight_decay=s.weight_decay,
                    precision=s.precision)
    spec = recipe.input_spec(s, model)
    settings.update(recipe.recorded(s, spec, model))
    return base_modes.train_base(model, s.deps, data_dir,
                                 lambda num_examples: base_config(s, epochs, num_examples),
                                 settings, restart_from, log, spec,
                                 lambda n: recipe.periodic_eval(s, model, s.deps, data_dir, n,
                                                                recipe.stored_spec(spec, model),
                                                                log))


def eval_file(model, path, data_dir, batch_size, log=print):
    """`eval FILE`: rebuild from the file's deps, evaluate, append to origin_<model>_eval_record.txt."""
    def console_line(result, deps, size):
        return ('precision @ 1 = %.4f recall @ 5 = %.4f [%d examples] mean loss = %.4f  deps %s  '
                'FLOPs %d%s' % (result.top1, result.top5, result.num_examples, result.loss, deps,
                                flops.count_flops(model, deps, image_size=size),
                                flops.other_convention(model, deps, size)))
    return base_modes.eval_file(model, path, data_dir, batch_size, evaluate_file, console_line,
                                record_line, 'origin_%s_eval_record.txt' % model.name, log)


class PruningRun:
    """Shared by both methods: the init file, the target widths, the important log, the stage
    settings, the stages' results entries, and running the stages."""
    METHOD = None  # 'magnitude' or 'csgd' in results.json

    def __init__(self, model, settings, data_dir, init_hdf5, mode, restart_from=None,
                 partial_start=False, log=print, verify=None, latency=None):
        self.model = model
        self.verify = verify or CutCheck()
        self.latency = latency  # a deploy.latency.LatencyMeter against the init file, or None
        self.s = settings
        self.data_dir = data_dir
        self.mode = mode
        self.log_file = '%s_%s_important_log.txt' % (model.name, mode)
        self.print = log
        self.init_hdf5 = init_hdf5 or model.scratch_weights
        self.restart_from = restart_from
        self.partial_start = partial_start
        self.logs = LogBook([self.log_file])
        if not os.path.exists(self.init_hdf5):
            raise UserError('%s does not exist; run `csgd_standalone.py train --model %s` first or '
                            'pass --init_hdf5 (an original std_dc40_9382.hdf5 also loads)'
                            % (self.init_hdf5, model.name))
        self.init = hdf5_io.read_hdf5(self.init_hdf5)
        self.origin_deps = model.file_deps(self.init)
        self.spec = recipe.input_spec(settings, model, self.init.input_spec)
        self.stored_spec = recipe.stored_spec(self.spec, model)
        self.targets = parse_target_deps(model, self.origin_deps, settings.target_deps,
                                         settings.target_layers, settings.min_width,
                                         settings.round_to)
        self.num_logits = sources.logits(data_dir, model)
        self.file_fields = dict(network=model.network, class_names=sources.class_names(data_dir))
        self.verifier = CutVerifier(self.verify, model, data_dir, self.stored_spec,
                                    self.num_logits)
        self.trace = model.trace(self.origin_deps, self.num_logits)
        hdf5_io.check_weights_fit(self.trace.shapes, self.init.weights, self.init_hdf5,
                                  partial_start)
        self.roots = model.group_roots()
        self.num_examples = sources.check_data(data_dir, self.spec).num_examples
        check_steps(self.train_config(), self.num_examples, mode, '--max_epochs')

    def log(self, message):
        log_important(message, self.log_file)

    def common_settings(self):
        return dict(model=self.model.name, init=self.init_hdf5,
                    init_sha256=file_digest(self.init_hdf5), target_deps=self.s.target_deps,
                    **sources.data_settings(self.data_dir),
                    **recipe.recorded(self.s, self.spec, self.model), **self.own_settings())

    def own_settings(self):
        """C-SGD's settings that differ from the originals' defaults (none for their recipes, so
        older run.json records match)."""
        s, out = self.s, {}
        if s.target_layers is not None:
            out['target_layers'] = list(s.target_layers)
        if s.clustered_weight_decay is not None:
            out['clustered_weight_decay'] = s.clustered_weight_decay
        return out

    def train_settings(self):
        s = self.s
        return dict(epochs=s.max_epochs, batch_size=s.batch_size, lr_values=s.lr_values,
                    lr_epoch_fractions=s.lr_epoch_fractions, weight_decay=s.weight_decay,
                    precision=s.precision, partial_start=self.partial_start)

    def run_stages(self, stages):
        try:
            StageRunner(stages, self.logs, restart_from=self.restart_from, log=self.print,
                        network=None if self.model.builtin else self.model.network).run()
        finally:
            if self.latency:
                self.latency.close()

    def eval_and_log(self, path, comment, weight_file=None):
        weight_file = weight_file or hdf5_io.read_hdf5(path)
        result = evaluate_file(self.model, weight_file, self.data_dir, self.s.eval_batch_size,
                               path)
        self.log(record_line(path, result, comment))
        return result

    def compare_cut(self, reference, cut, names):
        """The cut weights (in memory) against the weights they came from on the fixed batch."""
        return self.verifier.compare(reference, cut, 'the %s and %s models' % names)

    def log_verify(self, comparison, names, note):
        self.log('%s (%s)' % (self.verifier.line(comparison, *names), note))

    def stage_result(self, k, phase, path, widths, result, **extra):
        """A stage's entry for results.json (widths, FLOPs and parameters against the init file's;
        the latency against the init file's, measured, with --latency)."""
        if self.latency:
            extra['latency'] = self.latency.measure(path)
            self.log(describe_latency(extra['latency']))
        return results.stage_result(
            self.mode, self.METHOD, self.model,
            results.base_entry(self.model, self.init_hdf5, self.origin_deps, self.image_size()),
            k, phase, results.evaluation(self.model, path, widths, self.origin_deps, result,
                                         self.image_size()), **extra)

    def image_size(self):
        """The run's input size where it is not the model's (for FLOPs), else None."""
        return self.stored_spec.image_size if self.stored_spec else None

    def log_structure(self, origin, target):
        before = flops.count_flops(self.model, origin, image_size=self.image_size())
        after = flops.count_flops(self.model, target, image_size=self.image_size())
        other = flops.other_of(self.model)
        if other:  # the model's other count in parentheses
            o_before, o_after = (flops.count_flops(self.model, d, other, self.image_size())
                                 for d in (origin, target))
            other = ' (%s: %d -> %d, %.2f%% removed)' % (other, o_before, o_after,
                                                          100 * (1 - o_after / o_before))
        self.log('target structure %s: FLOPs %d -> %d (%.2f%% removed)%s, params %d -> %d, deps %s'
                 % (self.s.target_deps, before, after, 100 * (1 - after / before), other or '',
                    flops.count_params(self.model, origin), flops.count_params(self.model, target),
                    list(target)))

    def train_config(self, **kwargs):
        return _config(self.s, self.s.max_epochs, self.s.lr_values, self.s.lr_epoch_fractions,
                       self.num_examples, **kwargs)

    def trainer(self, deps, config, train_dir, init_weights, init_source, **kwargs):
        return Trainer(self.model, deps, self.data_dir, config, train_dir,
                       init_weights=init_weights, init_source=init_source,
                       partial_init=self.partial_start, logs=self.logs, log=self.print,
                       input_spec=self.stored_spec, **kwargs)


class CentripetalSGD(PruningRun):
    """`csgd1`: per iteration k (the authors' itr_deps), clusters -> C-SGD training -> trimming,
    each iteration starting from the previous one's trimmed file; stages `<mode>.itr<k>.clusters`,
    `<mode>.itr<k>.train` and `<mode>.itr<k>.trim`. A channel group is clustered once, by its first
    layer's (the pacesetter's) kernel, and all its members pull the same channels together."""
    METHOD = 'csgd'

    def __init__(self, model, settings, data_dir, init_hdf5=None, prefix='csgd1',
                 clusters_file=None, **kwargs):
        super().__init__(model, settings, data_dir, init_hdf5, prefix, **kwargs)
        self.clusters_file = clusters_file
        if clusters_file and len(self.targets) > 1:
            raise UserError('--clusters_file gives the clusters of one iteration; pass one target '
                            'in --target_deps')

    def files(self, k):
        prefix = '%s_%s_itr%d' % (self.model.name, self.mode, k)
        return dict(eqcls=prefix + '_eqcls.json', sted=prefix + '_sted.hdf5',
                    pruned=prefix + '_prunedweights.hdf5', train_dir=prefix + '_train')

    def run(self):
        s = self.s
        common = self.common_settings()
        clusters = dict(common, cluster_method=s.cluster_method)
        if self.clusters_file:
            if not os.path.exists(self.clusters_file):
                raise UserError('--clusters_file %s does not exist' % self.clusters_file)
            clustering.check_clusters(load_clusters(self.clusters_file), self.roots,
                                      self.origin_deps, self.targets[0], self.clusters_file)
            clusters = dict(common, clusters_file=self.clusters_file,
                            clusters_file_sha256=file_digest(self.clusters_file))
        elif s.cluster_method == 'kmeans':
            clusters.update(kmeans_seed=kmeans_seed(s), kmeans_n_init=s.kmeans_n_init)
        train = dict(clusters, centri_strength=s.centri_strength,
                     bn_strength_ratio=s.bn_strength_ratio, **self.train_settings())
        stages, start, origin = [], self.init_hdf5, self.origin_deps
        for k, target in enumerate(self.targets):
            f = self.files(k)
            it = Iteration(self, k, start, origin, target, f)
            name = '%s.itr%d.' % (self.mode, k)
            stages += [
                Stage(name + 'clusters', clusters, it.cluster_stage, outputs=[f['eqcls']],
                      inputs=[start]),
                Stage(name + 'train', train, it.train_stage, outputs=[f['sted']],
                      inputs=[start, f['eqcls']], work_dirs=[f['train_dir']]),
                Stage(name + 'trim', {}, it.trim_stage, outputs=[f['pruned']],
                      inputs=[f['sted'], f['eqcls']])]
            start, origin = f['pruned'], target
        self.run_stages(stages)
        return start


def csgd_method(handler):
    """C-SGD as the trainer runs it: the centripetal handler (which also applies the weight decay,
    so the config's is 0) and the hook that logs how far the clusters still spread."""
    return MethodBundle('csgd', hooks=(ClusterSpreadHook(handler),), grad_handler=handler,
                        config={'weight_decay': 0.0})


class Iteration:
    """One C-SGD iteration: from `start` (widths `origin`) to `target`."""

    def __init__(self, method, k, start, origin, target, files):
        self.m = method
        self.k = k
        self.start = start
        self.origin = tuple(origin)
        self.target = tuple(target)
        self.f = files
        self.trace = method.model.trace(origin, method.num_logits)

    def start_file(self):
        return self.m.init if self.k == 0 else hdf5_io.read_hdf5(self.start)

    def clusters(self, weights):
        """Cluster every channel group by its first layer's kernel; the clusters file is re-saved
        after each group, so a stopped clustering continues with the next one."""
        m = self.m
        if m.clusters_file:
            plans = load_clusters(m.clusters_file)
            save_clusters(self.f['eqcls'], plans)
            return plans
        plans = self.load_plans(partial=True) if os.path.exists(self.f['eqcls']) else {}
        for root in m.roots:
            if root in plans:
                continue
            kernel, target = weights[self.trace.convs[root].kernel], self.target[root]
            if m.s.cluster_method == 'kmeans':
                plans[root] = clustering.kmeans_clusters(kernel, target, kmeans_seed(m.s),
                                                         m.s.kmeans_n_init)
            elif m.s.cluster_method == 'even':
                plans[root] = clustering.even_clusters(self.origin[root], target)
            else:
                plans[root] = clustering.biased_clusters(self.origin[root], target)
            save_clusters(self.f['eqcls'], plans)
        return plans

    def load_plans(self, partial=False):
        """The clusters file, checked against the model's and the target's widths."""
        plans = load_clusters(self.f['eqcls'])
        clustering.check_clusters(plans, self.m.roots, self.origin, self.target, self.f['eqcls'],
                                  partial)
        return plans

    def cluster_stage(self):
        m = self.m
        m.log_structure(self.origin, self.target)
        m.log('CSGD: start itr %d, start from %s, st to %s, cur remain deps %s, next remain '
              'deps %s, cur train dir %s' % (self.k, self.start, self.f['sted'], list(self.origin),
                                             list(self.target), self.f['train_dir']))
        m.log('I use the eqcls of %s' % m.clusters_file if m.clusters_file else
              'I calculate eqcls by %s' % m.s.cluster_method)
        start = self.start_file()
        self.clusters(start.weights)
        result = m.eval_and_log(self.start, 'eval at itr %d, cur remain deps %s'
                                % (self.k, list(self.origin)), start)
        return m.stage_result(self.k, 'start', self.start, self.origin, result)

    def csgd_trainer(self, plans, bn_plans):
        """The C-SGD Trainer: weight decay only through the handler's decay matrix (the config's
        is 0, so it is applied once), the centripetal merge, the collapse monitor."""
        m = self.m
        handler = CentripetalHandler(self.trace, plans, bn_plans, m.s.weight_decay,
                                     m.s.centri_strength,
                                     m.s.bn_strength_ratio * m.s.centri_strength,
                                     m.s.clustered_weight_decay)
        self.evals = recipe.periodic_eval(m.s, m.model, self.origin, m.data_dir, m.num_examples,
                                          m.stored_spec, m.print)
        trainer = m.trainer(self.origin, m.train_config(), self.f['train_dir'],
                            self.start_file().weights, self.start, method=csgd_method(handler),
                            hooks=self.evals)
        return trainer, handler

    def train_stage(self):
        m = self.m
        plans = self.load_plans()
        bn_plans = clustering.bn_channel_clusters(self.trace, plans)
        trainer, handler = self.csgd_trainer(plans, bn_plans)
        spread = next(h for h in trainer.hooks if isinstance(h, ClusterSpreadHook))
        result = trainer.run()
        if not workers.writes_files():  # another worker's part ends with the training
            return
        hdf5_io.save_hdf5(self.f['sted'], result.weights, self.origin,
                          input_spec=m.stored_spec, **m.file_fields)
        m.log(handler.summary)
        m.log('C-SGD train completed. save to: %s' % self.f['sted'])
        deviation = cluster_deviation(result.weights, self.trace, plans, bn_plans)
        m.log('max difference within clusters after C-SGD: %.3g (kernels and BN vectors)'
              % deviation)
        evaluation = m.eval_and_log(self.f['sted'], 'eval before trimming at itr %d, cur remain '
                                    'deps %s' % (self.k, list(self.origin)))
        return m.stage_result(self.k, 'trained', self.f['sted'], self.origin, evaluation,
                              target_widths=list(self.target), max_cluster_difference=deviation,
                              cluster_difference_steps=[h[0] for h in spread.history],
                              cluster_difference=[h[1] for h in spread.history],
                              **({'evaluations': self.evals[0].results()} if self.evals else {}))

    def trim_stage(self):
        m = self.m
        sted = hdf5_io.read_hdf5(self.f['sted'])
        plans = self.load_plans()
        weights, deps = apply_surgery(self.trace, sted.weights, plans)
        deviation = cluster_deviation(sted.weights, self.trace, plans,
                                      clustering.bn_channel_clusters(self.trace, plans))
        collapsed = deviation <= COLLAPSED
        comparison = m.compare_cut(Version(self.origin, sted.weights), Version(deps, weights),
                                   ('untrimmed', 'trimmed'))
        if collapsed and m.verifier.exceeded(comparison):
            raise UserError(self.trim_error(comparison, deviation))
        hdf5_io.save_hdf5(self.f['pruned'], weights, deps, input_spec=self.m.stored_spec,
                          **self.m.file_fields)
        m.log('finished trimming at itr %d, save to %s' % (self.k, self.f['pruned']))
        m.log_verify(comparison, ('trimmed', 'untrimmed'), (
            'clusters collapsed, max difference %.3g <= %g: enforced' if collapsed else
            'clusters not collapsed, max difference %.3g > %g: reported only')
            % (deviation, COLLAPSED))
        result = m.eval_and_log(self.f['pruned'], 'eval after trimming at itr %d, cur remain deps '
                                '%s' % (self.k, list(self.target)))
        return m.stage_result(self.k, 'trimmed', self.f['pruned'], deps, result,
                              verify=m.verifier.entry(comparison, enforced=collapsed))

    def trim_error(self, comparison, deviation):
        m, name = self.m, '%s.itr%d' % (self.m.mode, self.k)
        return ('%s.trim: the trimmed model does not compute what the untrimmed one does although '
                'its clusters have collapsed (max difference within clusters %.3g <= %g): %s; %s '
                'was not written. Trimming collapsed clusters is exact, so %s or %s is damaged, or '
                'the clusters are only nearly collapsed: train longer (--max_epochs) or with a '
                'larger --centri_strength (--restart_from %s.train), or keep the trimmed model '
                'anyway with a larger --verify_tolerance'
                % (name, deviation, COLLAPSED, m.verifier.figures(comparison), self.f['pruned'],
                   self.f['sted'], self.f['eqcls'], name))
