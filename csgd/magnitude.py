"""The magnitude baseline C-SGD is compared with (`magnitude1`): every channel group pruned by the
L1 norms of its kernels to the target widths, then finetuned with the C-SGD schedule."""

from csgd import clustering
from csgd.clusters_file import save_clusters
from csgd.pipeline import PruningRun
from tf_benchmarks.commands import recipe
from tf_benchmarks.core import workers
from tf_benchmarks.engine.cut_check import Version
from tf_benchmarks.engine.train_config import kernels_only
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.pruning.criteria import group_l1
from tf_benchmarks.pruning.surgery import apply_surgery
from tf_benchmarks.runs.stages import Stage


class MagnitudePruning(PruningRun):
    """`magnitude1`: L1-magnitude pruning of every layer to the final target width (a channel group
    ranked by the summed L1 norms of its members), then finetuning with the C-SGD schedule;
    stages `<mode>.prune` and `<mode>.finetune`."""
    METHOD = 'magnitude'

    def __init__(self, model, settings, data_dir, init_hdf5=None, prefix='magnitude1', **kwargs):
        super().__init__(model, settings, data_dir, init_hdf5, prefix, **kwargs)
        self.prefix = prefix
        self.target_deps = self.targets[-1]
        self.eqcls_file = '%s_equivalent_eqcls_%s.json' % (model.name, prefix)
        self.pruned_file = '%s_%s_prunedweights.hdf5' % (model.name, prefix)
        self.trained_file = '%s_trained.hdf5' % prefix
        self.train_dir = prefix + '_train'

    def plans(self):
        plans = {}
        for group in self.model.groups:
            l1 = group_l1(self.trace, self.init.weights, group.root)
            plans[group.root] = clustering.magnitude_plan(l1, self.target_deps[group.root],
                                                          self.s.magnitude_variant)
        return plans

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
        self.log_structure(self.origin_deps, self.target_deps)
        plans = self.plans()
        save_clusters(self.eqcls_file, plans)
        weights, deps = apply_surgery(self.trace, self.init.weights, plans)
        comparison = self.compare_cut(Version(self.origin_deps, self.init.weights),
                                      Version(deps, weights), ('unpruned', 'pruned'))
        hdf5_io.save_hdf5(self.pruned_file, weights, deps, input_spec=self.stored_spec,
                          **self.file_fields)
        self.log('%s (%s variant): pruned %s to %s, saved to %s'
                 % (self.prefix, self.s.magnitude_variant, self.init_hdf5, list(deps),
                    self.pruned_file))
        self.log_verify(comparison, ('pruned', 'unpruned'),
                        'magnitude pruning changes the model: reported only')
        result = self.eval_and_log(self.pruned_file,
                                   'eval after magnitude pruning, before finetuning')
        return self.stage_result(0, 'pruned', self.pruned_file, deps, result,
                                 variant=self.s.magnitude_variant,
                                 verify=self.verifier.entry(comparison, enforced=False))

    def finetune(self):
        pruned = hdf5_io.read_hdf5(self.pruned_file)
        clean = self.s.magnitude_variant == 'clean'
        config = self.train_config(weight_decay=self.s.weight_decay, l2_filter=kernels_only,
                                   augmentation=clean, shuffle=clean)
        evals = recipe.periodic_eval(self.s, self.model, pruned.deps, self.data_dir,
                                     self.num_examples, self.stored_spec, self.print)
        result = self.trainer(pruned.deps, config, self.train_dir, pruned.weights,
                              self.pruned_file, hooks=evals).run()
        if not workers.writes_files():  # another worker's part ends with the training
            return
        hdf5_io.save_hdf5(self.trained_file, result.weights, pruned.deps,
                          input_spec=self.stored_spec, **self.file_fields)
        self.log('%s finetuning completed. save to: %s' % (self.prefix, self.trained_file))
        result = self.eval_and_log(self.trained_file, 'eval after finetuning')
        return self.stage_result(0, 'finetuned', self.trained_file, pruned.deps, result,
                                 **({'evaluations': evals[0].results()} if evals else {}))
