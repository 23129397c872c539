"""AOFP's three commands over files in the working directory, as in the original: base training,
evaluation, and the iterative prune schedule (per iteration: search while training -> tuned weights
with masks -> physical pruning -> finetuning), run as stages of the stage runner (run.json)."""

import fractions
import functools
import os

import numpy as np

from aofp.latency_target import TargetSearch
from aofp.masked_builder import MaskedConvNetBuilder
from aofp.search import DROP_SEED, AofpSearch
from aofp.search_hook import SearchHook
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
from tf_benchmarks.files.atomic import file_digest
from tf_benchmarks.pruning.file_model import check_masks
from tf_benchmarks.pruning.surgery import remove_masked
from tf_benchmarks.engine.train_config import TrainConfig, check_steps, derived_seed, kernels_only
from tf_benchmarks.commands import base_modes, recipe
from tf_benchmarks.engine.method import MethodBundle
from tf_benchmarks.engine.trainer import Trainer

EXP_DIR = 'bds_exps'
OVERALL_LOG = 'bds_overall_logs.txt'
EVAL_RECORDS = 'bc_overall_eval_records.txt'
TRY_ARG_BASE = 'reproduce'


def _exact(x):
    return fractions.Fraction(x).limit_denominator(10 ** 6)


def _steps(epochs, num_examples, batch_size):
    return int(_exact(epochs) * num_examples / batch_size)


def _boundaries(settings, epochs, num_examples):
    """The original's step boundaries, int(epoch * N / batch) - 1, at fractions of the epochs
    (paper: epochs 200 and 400 of 600 -> steps 156249 and 312499 on 50,000 images)."""
    return [_steps(_exact(f) * _exact(epochs), num_examples, settings.batch_size) - 1
            for f in settings.lr_epoch_fractions]


def _config(s, epochs, num_examples, **kwargs):
    """The fields all of AOFP's training runs share: batch, L2 on kernels, bookkeeping, precision,
    seed."""
    kwargs['lr_values'] = recipe.scaled_lr(s, kwargs['lr_values'])
    return TrainConfig(num_steps=_steps(epochs, num_examples, s.batch_size),
                       batch_size=s.batch_size, weight_decay=s.weight_decay,
                       l2_filter=kernels_only, display_every=s.display_every,
                       checkpoint_every=s.checkpoint_every, precision=s.precision, seed=s.seed,
                       **recipe.optimizer_fields(s, ('bias', 'beta')), **kwargs)


def base_train_config(s, num_examples):
    return _config(s, s.max_epochs, num_examples, lr_values=s.lr_values,
                   lr_boundaries=_boundaries(s, s.max_epochs, num_examples),
                   warmup_steps=_steps(s.warmup_epochs, num_examples, s.batch_size),
                   snapshot_every=s.train_snapshot_steps)


def search_config(s, num_examples):
    return _config(s, s.search_max_epochs, num_examples, lr_values=(s.search_lr,),
                   snapshot_every=s.search_snapshot_steps)


def finetune_config(s, num_examples):
    warmup = _steps(s.finetune_warmup_epochs, num_examples, s.batch_size)
    if s.finetune_cosine:
        return _config(s, s.finetune_epochs, num_examples, lr_values=(s.finetune_lr,),
                       cosine=True, warmup_steps=warmup)
    values = s.lr_values if s.finetune_lr is None else \
        tuple(v * s.finetune_lr / s.lr_values[0] for v in s.lr_values)
    return _config(s, s.finetune_epochs, num_examples, lr_values=values,
                   lr_boundaries=_boundaries(s, s.finetune_epochs, num_examples),
                   warmup_steps=warmup)


def record_line(model_name, path, result, comment=None, loss_decimals=8):
    """The original eval_once / simple_eval record line (top1 is a fraction)."""
    line = '%s,%s,top1=%.5f,top5=%.5f,loss=%.*f on validation at %s' % (
        model_name, path, result.top1, result.top5, loss_decimals, result.loss, cur_time())
    return line + (',  ' + comment if comment else '')


def masked_builder_factory(target_layers, search=False):
    """Builders for evaluation (masks fed as placeholders) or, with `search`, for the search's
    training, where the masks are variables that SearchHook assigns before every step."""
    return lambda images, phase_train, **options: MaskedConvNetBuilder(
        images, phase_train, target_layers, search=search, mask_variables=search, **options)


def search_method(target_layers, hook):
    """The AOFP search as the trainer runs it: the masked multi-path builder and the search hook."""
    return MethodBundle('aofp', builder_factory=masked_builder_factory(target_layers, search=True),
                        hooks=(hook,))


def evaluate_weights(model, weight_file, data_dir, batch_size, source):
    """Evaluate a WeightFile at its deps; files with masks are evaluated as the masked model."""
    if not weight_file.masks:
        return evaluate_file(model, weight_file, data_dir, batch_size, source)
    masks = weight_file.masks
    check_masks(model, model.file_deps(weight_file), masks, source)
    return evaluate_file(model, weight_file, data_dir, batch_size, source,
                         feed_fn=lambda b: {b.base_masks[i]: masks[i] for i in masks},
                         builder_factory=masked_builder_factory(sorted(masks)))


def masked_version(model, weight_file):
    """A WeightFile as the model it computes (cut_check.Version): masked where it has masks."""
    masks = weight_file.masks
    if not masks:
        return Version(model.file_deps(weight_file), weight_file.weights)
    return Version(model.file_deps(weight_file), weight_file.weights,
                   masked_builder_factory(sorted(masks)),
                   lambda b: {b.base_masks[i]: masks[i] for i in masks})


def _train_settings(s, epochs):
    return {'epochs': epochs, 'batch_size': s.batch_size, 'lr_values': s.lr_values,
            'lr_epoch_fractions': s.lr_epoch_fractions, 'weight_decay': s.weight_decay,
            'precision': s.precision}


def check_target_layers(model, layers, flag='--target_layers'):
    """The layers AOFP searches: `layers`, else the model's default target layers (a network that
    is not shipped: every channel group whose outputs feed a conv or FC layer), else every group;
    each must be the root of its channel group (a ResNet pacesetter stands for its followers).
    `flag` names them in errors."""
    n = len(model.default_deps)
    if layers is None:
        layers = model.default_target_layers
        if layers is None:
            layers = [g.root for g in model.groups]
    layers = sorted(set(int(l) for l in layers))
    roots = {member: g.root for g in model.groups for member in g.members}
    for layer in layers:
        if not 0 <= layer < n:
            raise UserError('%s: %s has conv layers 0..%d, got %d'
                            % (flag, model.name, n - 1, layer))
        if roots[layer] != layer:
            raise UserError('%s: layer %d is tied to layer %d (their outputs are '
                            'added); search the group by its first layer, %d'
                            % (flag, layer, roots[layer], roots[layer]))
    return layers


def prune_weights(model, tuned_file):
    """Physically remove a tuned file's masked filters -> (weights, deps); exact: the pruned model
    computes what the masked one does."""
    check_masks(model, model.file_deps(tuned_file), tuned_file.masks, 'the tuned weights')
    return remove_masked(model.trace(tuned_file.deps, model.file_num_classes(tuned_file)),
                         tuned_file.weights, tuned_file.masks)


def train_base(model, settings, data_dir, restart_from=None, log=print):
    """`train`: the base model from scratch -> <model>_scratch_savedweights.hdf5 (one stage)."""
    spec = recipe.input_spec(settings, model)
    return base_modes.train_base(
        model, settings.deps, data_dir,
        lambda num_examples: base_train_config(settings, num_examples),
        dict(warmup_epochs=settings.warmup_epochs,
             **_train_settings(settings, settings.max_epochs),
             **recipe.recorded(settings, spec, model)), restart_from, log, spec,
        lambda n: recipe.periodic_eval(settings, model, settings.deps, data_dir, n,
                                       recipe.stored_spec(spec, model), log))


def eval_file(model, path, data_dir, batch_size, log=print):
    """`eval FILE`: rebuild from the file's deps, evaluate the test split, append the record line."""
    def console_line(result, deps, size):
        return ('top1 %.4f  top5 %.4f  loss %.4f  (%d images)  deps %s  FLOPs %d (%.1f%% removed%s)'
                % (result.top1, result.top5, result.loss, result.num_examples, deps,
                   flops.count_flops(model, deps, image_size=size),
                   100 * flops.flops_pruned_ratio(model, deps, image_size=size),
                   flops.other_convention(model, deps, size)))
    return base_modes.eval_file(model, path, data_dir, batch_size, evaluate_weights, console_line,
                                lambda p, result: record_line(model.name, p, result),
                                EVAL_RECORDS, log)


class AofpPruning:
    """`prune`: the iterative schedule, three stages per iteration (`itr<k>.search`,
    `itr<k>.prune`, `itr<k>.finetune`), each ending with its evaluation line in the overall log."""

    def __init__(self, model, settings, data_dir, base_weights=None, restart_from=None,
                 partial_start=False, log=print, verify=None, latency=None, latency_target=None):
        """`latency`: a deploy.latency.LatencyMeter timing every evaluated file against the
        base (None: not measured); `latency_target`: a LatencyTarget, whose ms targets replace
        the FLOPs targets of the iterations."""
        self.model = model
        self.latency = latency
        self.latency_target = latency_target
        self.target_search = None
        self.verify = verify or CutCheck()
        self.s = settings
        self.data_dir = data_dir
        self.base_weights = base_weights or model.scratch_weights
        self.restart_from = restart_from
        self.partial_start = partial_start
        self.log = log
        self.target_layers = check_target_layers(model, settings.target_layers)
        self.members = {g.root: g.members for g in model.groups}
        self.logs = LogBook([OVERALL_LOG])

    def prefix(self, k):
        return os.path.join(EXP_DIR, '%s_%s_itr%d' % (self.model.name, TRY_ARG_BASE, k))

    def stages(self):
        s = self.s
        common = dict(model=self.model.name, **sources.data_settings(self.data_dir))
        common.update(recipe.recorded(s, self.spec, self.model))
        stages, start = [], self.base_weights
        schedule = s.itr_schedule
        if self.target_search:
            schedule = [None] * len(self.latency_target.targets_ms)
            if not self.latency_target.table_file:
                stages.append(Stage('latency_table', dict(
                    model=self.model.name, widths=list(self.base_deps),
                    batch=self.latency_target.batch, calls=self.latency_target.calls,
                    image_size=self.spec.image_size, start=start,
                    start_sha256=file_digest(start)),
                    functools.partial(self.target_search.measure_stage, start),
                    outputs=[self.target_search.path], inputs=[start]))
        for k, target in enumerate(schedule):
            p = self.prefix(k)
            tuned, pruned, fted = (p + '_tunedweights.hdf5', p + '_prunedweights.hdf5',
                                   p + '_ftedweights.hdf5')
            self.logs.add(p + '_bdslog.txt')
            search = dict(common, start=start, target=target, target_layers=self.target_layers,
                          batches_per_half=s.batches_per_half, metric_limit=s.metric_limit,
                          search_lr=s.search_lr, search_max_epochs=s.search_max_epochs,
                          search_start_step=s.search_start_step, batch_size=s.batch_size,
                          weight_decay=s.weight_decay, precision=s.precision,
                          partial_start=self.partial_start)
            if k == 0:
                search['start_sha256'] = file_digest(start)
            inputs = [start]
            if self.target_search:
                search.update(self.target_search.settings(), target_latency_ms=
                              self.latency_target.targets_ms[k])
                inputs.append(self.target_search.path)
            stages += [
                Stage('itr%d.search' % k, search,
                      functools.partial(self.search, k, target, start, tuned),
                      outputs=[tuned], inputs=inputs, work_dirs=[p + '_train']),
                Stage('itr%d.prune' % k, {}, functools.partial(self.prune, k, tuned, pruned),
                      outputs=[pruned], inputs=[tuned]),
                Stage('itr%d.finetune' % k,
                      dict(common, warmup_epochs=s.finetune_warmup_epochs,
                           cosine=s.finetune_cosine, finetune_lr=s.finetune_lr,
                           **_train_settings(s, s.finetune_epochs)),
                      functools.partial(self.finetune, k, pruned, fted),
                      outputs=[fted], inputs=[pruned], work_dirs=[p + '_ft'])]
            start = fted
        return stages

    def run(self):
        base = hdf5_io.read_hdf5(self.base_weights)
        self.base_deps = self.model.file_deps(base)
        self.spec = recipe.input_spec(self.s, self.model, base.input_spec)
        self.stored_spec = recipe.stored_spec(self.spec, self.model)
        self.num_logits = sources.logits(self.data_dir, self.model)
        self.file_fields = dict(network=self.model.network,
                                class_names=sources.class_names(self.data_dir))
        self.verifier = CutVerifier(self.verify, self.model, self.data_dir, self.stored_spec,
                                    self.num_logits)
        hdf5_io.check_weights_fit(self.model.trace(self.base_deps, self.num_logits).shapes,
                                  base.weights,
                                  self.base_weights, self.partial_start)
        self.num_examples = n = sources.check_data(self.data_dir, self.spec).num_examples
        check_steps(search_config(self.s, n), n, 'the search', '--search_max_epochs')
        check_steps(finetune_config(self.s, n), n, 'finetuning', '--finetune_epochs')
        if self.latency_target:
            self.target_search = TargetSearch(self.latency_target, self.model, self.spec.image_size,
                                              self.num_logits, self.log)
            if self.latency_target.table_file:
                self.target_search.table(self.base_deps)
        try:
            StageRunner(self.stages(), self.logs, restart_from=self.restart_from, log=self.log,
                        network=None if self.model.builtin else self.model.network).run()
        finally:
            if self.latency:
                self.latency.close()
        iterations = len(self.latency_target.targets_ms if self.latency_target else
                         self.s.itr_schedule)
        return self.prefix(iterations - 1) + '_ftedweights.hdf5'

    def deps_of(self, deps, target_widths):
        """`deps` with each target layer's group set to its width."""
        deps = list(deps)
        for layer, width in zip(self.target_layers, target_widths):
            for member in self.members[layer]:
                deps[member] = int(width)
        return deps

    def flops_pruned(self, deps):
        """FLOPs removed relative to the base weights' widths (the original VGG for `paper`), in
        the run's FLOPs convention, at its input size."""
        return flops.flops_pruned_ratio(self.model, deps, self.base_deps, self.s.flops_convention,
                                        self.spec.image_size)

    def other_flops_pruned(self, deps):
        """` (projection_2x2: 41.2%)`: the share removed under the model's other FLOPs convention,
        to follow flops_pruned(deps) in the search's lines; '' for models counted one way."""
        return flops.other_removed(self.model, deps, self.base_deps, self.s.flops_convention,
                                   self.spec.image_size)

    def search(self, k, target, start_file, tuned):
        start = hdf5_io.read_hdf5(start_file)
        deps = self.model.file_deps(start)
        if self.target_search:
            target_ms = self.latency_target.targets_ms[k]
            self.target_search.table(deps)
            self.log('AOFP iteration %d: target %.3f ms per call at batch %d (the table %s '
                     'predicts %.3f ms at the start), starting from %s'
                     % (k, target_ms, self.latency_target.batch, self.target_search.path,
                        self.target_search.predict(deps), start_file))

            def reached(widths):
                return self.target_search.predict(self.deps_of(deps, widths)) <= target_ms
        else:
            reached = None
            self.log('AOFP iteration %d: target %.0f%% of FLOPs removed, starting from %s'
                     % (k, 100 * target, start_file))
        search = AofpSearch([np.ones(deps[t], np.float32) for t in self.target_layers],
                            self.s.batches_per_half, self.s.metric_limit,
                            self.s.search_start_step,
                            lambda widths: self.flops_pruned(self.deps_of(deps, widths)), target,
                            seed=derived_seed(self.s.seed, DROP_SEED), reached=reached,
                            min_width=self.s.min_width, round_to=self.s.round_to)
        hook = SearchHook(search, self.target_layers, self.prefix(k) + '_bdslog.txt',
                          self.s.remain_log_steps, self.s.save_per_moves,
                          lambda widths: self.other_flops_pruned(self.deps_of(deps, widths)))
        trainer = Trainer(self.model, deps, self.data_dir, search_config(self.s, self.num_examples),
                          self.prefix(k) + '_train', init_weights=start.weights,
                          method=search_method(self.target_layers, hook), log=self.log,
                          input_spec=self.stored_spec, init_source=start_file, partial_init=self.partial_start,
                          logs=self.logs)
        result = trainer.run()
        if not workers.writes_files():  # another worker's part ends with the training
            return
        extra = dict(target_flops_removed=target)
        if self.target_search:
            final = self.deps_of(deps, search.widths)
            extra['latency_target'], line = self.target_search.report(k, final, self.spec,
                                                                      search.terminated)
            hook.log(line)
            extra.pop('target_flops_removed')
        if not search.terminated:
            hook.log('search stopped after %d steps at %s, short of the target %s (raise '
                     '--search_max_epochs or --metric_limit)'
                     % (result.step, '%.1f%% of FLOPs removed%s' % (
                         100 * search.flops_pruned(search.widths),
                         self.other_flops_pruned(self.deps_of(deps, search.widths)))
                         if target is not None else
                         'a predicted %.3f ms' % extra['latency_target']['predicted_ms'],
                         '%.0f%%' % (100 * target) if target is not None else
                         '%.3f ms' % extra['latency_target']['target_ms']))
        hdf5_io.save_hdf5(tuned, result.weights, deps, hook.masks(), self.stored_spec,
                          **self.file_fields)
        tuned_file = hdf5_io.read_hdf5(tuned)
        return self._log_eval(k, 'tuned', tuned, tuned_file, 9,
                              'after tuning, the masks suggest deps=%s' % self._widths(tuned_file),
                              search_steps=result.step, reached_target=search.terminated, **extra)

    def prune(self, k, tuned, pruned):
        tuned_file = hdf5_io.read_hdf5(tuned)
        weights, deps = prune_weights(self.model, tuned_file)
        comparison = self.verify_pruning(k, tuned_file, weights, deps)
        hdf5_io.save_hdf5(pruned, weights, deps, input_spec=self.stored_spec, **self.file_fields)
        log_important(self.verifier.line(comparison, 'pruned', 'tuned (masked)'),
                      self.prefix(k) + '_bdslog.txt')
        return self._log_eval(k, 'pruned', pruned, hdf5_io.read_hdf5(pruned), 8,
                              verify=self.verifier.entry(comparison, enforced=True))

    def verify_pruning(self, k, tuned_file, weights, deps):
        """The pruned weights (in memory) against the masked tuned model on the fixed batch;
        physical pruning is exact, so a difference above the tolerance is an error."""
        comparison = self.verifier.compare(masked_version(self.model, tuned_file),
                                           Version(deps, weights), 'the tuned and pruned models')
        if self.verifier.exceeded(comparison):
            raise UserError(
                'itr%d.prune: the pruned model does not compute what the tuned (masked) one does: '
                '%s; %s was not written. Physical pruning must be exact, so the tuned file is '
                'damaged or this is a bug; to keep the pruned model anyway, run again with a '
                'larger --verify_tolerance' % (k, self.verifier.figures(comparison),
                                               self.prefix(k) + '_prunedweights.hdf5'))
        return comparison

    def finetune(self, k, pruned, fted):
        pruned_file = hdf5_io.read_hdf5(pruned)
        config = finetune_config(self.s, self.num_examples)
        evals = recipe.periodic_eval(self.s, self.model, pruned_file.deps, self.data_dir,
                                     self.num_examples, self.stored_spec, self.log)
        result = Trainer(self.model, pruned_file.deps, self.data_dir, config, self.prefix(k) + '_ft',
                         init_weights=pruned_file.weights, log=self.log, init_source=pruned,
                         logs=self.logs, input_spec=self.stored_spec, hooks=evals).run()
        if not workers.writes_files():  # another worker's part ends with the training
            return
        hdf5_io.save_hdf5(fted, result.weights, pruned_file.deps, input_spec=self.stored_spec,
                          **self.file_fields)
        extra = {'evaluations': evals[0].results()} if evals else {}
        return self._log_eval(k, 'finetuned', fted, hdf5_io.read_hdf5(fted), 8, **extra)

    def _widths(self, weight_file):
        """The widths a file stands for: its deps, with each masked group at its alive count."""
        masks = weight_file.masks
        return self.deps_of(weight_file.deps, [int((masks[t] > 0.5).sum())
                                               for t in self.target_layers]) if masks \
            else list(weight_file.deps)

    def _log_eval(self, k, phase, path, weight_file, loss_decimals, comment=None, **extra):
        """Evaluate, append the line to the overall log, and return the stage's results entry."""
        result = evaluate_weights(self.model, weight_file, self.data_dir, self.s.eval_batch_size,
                                  path)
        widths = self._widths(weight_file)
        note = '%s, flops_pruned=%.4f' % (comment or 'deps=%s' % widths, self.flops_pruned(widths))
        other = flops.other_of(self.model, self.s.flops_convention)
        if other:
            note += ', flops_pruned_%s=%.4f' % (other, flops.flops_pruned_ratio(
                self.model, widths, self.base_deps, other, self.spec.image_size))
        log_important(record_line(self.model.name, path, result, note, loss_decimals),
                      OVERALL_LOG)
        if self.latency:
            extra['latency'] = self.latency.measure(path)
            log_important(describe_latency(extra['latency']), self.prefix(k) + '_bdslog.txt')
        return results.stage_result(
            'prune', 'aofp', self.model,
            results.base_entry(self.model, self.base_weights, self.base_deps, self.image_size()),
            k, phase, results.evaluation(self.model, path, widths, self.base_deps, result,
                                         self.image_size()), **extra)

    def image_size(self):
        """The run's input size where it is not the model's (for FLOPs), else None."""
        return self.stored_spec.image_size if self.stored_spec else None
