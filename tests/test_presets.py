"""The paper presets' step arithmetic on the full CIFAR-10 (50,000 images, batch 64), as the
originals compute it: steps, LR boundaries, warm-up, snapshot and checkpoint intervals."""

from aofp import pipeline as aofp
from aofp.presets import PRESETS as AOFP
from csgd import pipeline as csgd
from csgd.presets import PRESETS as CSGD


def test_aofp_vc_paper_steps():
    s = AOFP['paper']['vc']
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
    s = CSGD['paper']['dc40']
    config = csgd._config(s, s.max_epochs, s.lr_values, s.lr_epoch_fractions, 50000)
    assert (config.num_steps, list(config.lr_boundaries)) == (468750, [156200, 312400, 390500])
    assert list(config.lr_values) == [3e-3, 3e-4, 3e-5, 3e-6]
    assert (config.snapshot_every, config.checkpoint_every, config.batch_size) == (20000, 2000, 64)
    assert (s.centri_strength, s.weight_decay, s.target_deps) == (3e-3, 1e-4, '3-3-3')
    base = csgd._config(s, s.train_epochs, s.train_lr_values, s.train_lr_epoch_fractions, 50000)
    assert (base.num_steps, list(base.lr_boundaries)) == (234375, [117150, 175725])


def test_resnet_paper_presets():
    s = AOFP['paper']['src56']
    base = aofp.base_train_config(s, 50000)
    assert (base.num_steps, list(base.lr_boundaries), list(base.lr_values)) == \
        (187500, [93749, 140624], [0.1, 0.01, 0.001])
    finetune = aofp.finetune_config(s, 50000)
    assert finetune.cosine and list(finetune.lr_values) == [0.01] and finetune.num_steps == 468750
    assert (s.batches_per_half, s.metric_limit, s.search_start_step, s.itr_schedule) == \
        (1000, 0.01, 500, (0.5,))
    assert s.target_layers == tuple(p + 1 + 2 * b for p in (0, 19, 38) for b in range(9))
    c = CSGD['paper']['src56']
    train = csgd._config(c, c.max_epochs, c.lr_values, c.lr_epoch_fractions, 50000)
    assert (train.num_steps, list(train.lr_boundaries), list(train.lr_values)) == \
        (468750, [156200, 312400], [0.03, 0.003, 0.0003])
    assert (c.train_epochs, c.train_lr_values[0], c.train_warmup_epochs, c.centri_strength,
            c.bn_strength_ratio, c.target_deps) == (600, 0.05, 5, 3e-3, 0.1, '13/16,11/16,5/8')
