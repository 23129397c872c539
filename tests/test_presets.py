"""The paper presets' step arithmetic on the full CIFAR-10 (50,000 images, batch 64), as the
originals compute it: steps, LR boundaries, warm-up, snapshot and checkpoint intervals."""

from aofp import pipeline as aofp
from aofp.presets import PRESETS as AOFP
from csgd import pipeline as csgd
from csgd.presets import PRESETS as CSGD


def test_aofp_vc_paper_steps():
    s = AOFP['paper']
    base = aofp.base_train_config(s, 50000)
    assert (base.num_steps, list(base.lr_boundaries), list(base.lr_values)) == \
        (468750, [156249, 312499], [0.05, 0.005, 0.0005])
    assert (base.snapshot_every, base.checkpoint_every, base.warmup_steps) == (10000, 2000, 0)
    search = aofp.search_config(s, 50000)
    assert (search.num_steps, list(search.lr_values), search.snapshot_every) == \
        (int(9999 * 50000 / 64), [0.001], 20000)
    finetune = aofp.finetune_config(s, 50000)
    assert (finetune.num_steps, list(finetune.lr_boundaries), finetune.warmup_steps) == \
        (468750, [156249, 312499], 7812)
    assert (s.batches_per_half, s.metric_limit, s.search_start_step) == (20000, 0.01, 2000)


def test_csgd_dc40_paper_steps():
    s = CSGD['paper']
    config = csgd._config(s, s.max_epochs, s.lr_values, s.lr_epoch_fractions, 50000)
    assert (config.num_steps, list(config.lr_boundaries)) == (468750, [156200, 312400, 390500])
    assert list(config.lr_values) == [3e-3, 3e-4, 3e-5, 3e-6]
    assert (config.snapshot_every, config.checkpoint_every, config.batch_size) == (20000, 2000, 64)
    assert (s.centri_strength, s.weight_decay, s.target_deps) == (3e-3, 1e-4, '3-3-3')
    base = csgd._config(s, s.train_epochs, s.train_lr_values, s.train_lr_epoch_fractions, 50000)
    assert (base.num_steps, list(base.lr_boundaries)) == (234375, [117150, 175725])
