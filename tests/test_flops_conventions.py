"""FLOPs under both conventions of the ResNets: src56's count by hand (1x1 stride-2 projections as
built, and as 2x2 convs as the authors' script counts them), and the second count next to the first
in summary, results.json entries and the log texts."""

import pytest

from tf_benchmarks.deploy import layer_summary
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network import flops
from tf_benchmarks.runs import results

# src56 at its default widths (16/32/64, 9 blocks per stage, 32x32 input), MACs by hand
STEM = 3 * 3 * 3 * 16 * 32 * 32                      # 442,368
STAGE1 = 18 * 3 * 3 * 16 * 16 * 32 * 32              # 18 convs 16->16 at 32x32
PROJECTIONS = 16 * 32 * 16 * 16 + 32 * 64 * 8 * 8    # 1x1 stride 2: 131,072 each
STAGE2 = 3 * 3 * 16 * 32 * 16 * 16 + 17 * 3 * 3 * 32 * 32 * 16 * 16
STAGE3 = 3 * 3 * 32 * 64 * 8 * 8 + 17 * 3 * 3 * 64 * 64 * 8 * 8
FC = 64 * 10
AS_BUILT = STEM + STAGE1 + PROJECTIONS + STAGE2 + STAGE3 + FC
AUTHORS = AS_BUILT + 3 * PROJECTIONS                 # a 2x2 kernel: 4x a 1x1's MACs


def test_src56_by_hand():
    model = get_model('src56')
    assert AS_BUILT == 125747840 and AUTHORS == 126534272
    # the paper's 125.49M is the count without projections (the ResNet paper's zero-padding
    # shortcuts): 125,485,696
    assert round((AS_BUILT - PROJECTIONS) / 1e6, 2) == 125.49
    assert flops.count_flops(model, model.default_deps) == AS_BUILT
    assert flops.count_flops(model, model.default_deps, 'projection_2x2') == AUTHORS
    assert flops.alternative(model) == 'projection_2x2'
    assert flops.alternative(get_model('sres50')) == 'resnet_paper'
    assert flops.alternative(get_model('vc')) is None and flops.other_convention(
        get_model('vc'), get_model('vc').default_deps) == ''
    # the authors' x 5/8 (d * 5 // 8: 10/20/40): 49,224,080 and 49,531,280, 60.85% removed
    pruned = [d * 5 // 8 for d in model.default_deps]
    assert flops.count_flops(model, pruned) == 49224080
    assert flops.count_flops(model, pruned, 'projection_2x2') == 49531280
    assert flops.flops_pruned_ratio(model, pruned, convention='projection_2x2') == \
        pytest.approx(1 - 49531280 / AUTHORS, abs=1e-12)
    assert flops.other_convention(model, pruned) == '; projection_2x2: 49531280 (60.9% removed)'
    assert flops.other_removed(model, pruned) == ' (projection_2x2: 60.9%)'
    # a run counting in the authors' convention shows the as-built count beside it
    assert flops.other_removed(model, pruned, convention='projection_2x2') == \
        ' (torchvision: 60.9%)'
    src110 = get_model('src110')
    assert flops.count_flops(src110, src110.default_deps, 'projection_2x2') - \
        flops.count_flops(src110, src110.default_deps) == 3 * PROJECTIONS


def test_summary_and_results_carry_both_counts():
    model = get_model('src56')
    pruned = [d * 5 // 8 for d in model.default_deps]
    summary = layer_summary.summarize(model, pruned)
    total = summary['total']
    assert total['flops'] == 49224080 and total['flops_projection_2x2'] == 49531280
    assert total['flops_removed_projection_2x2'] == pytest.approx(1 - 49531280 / AUTHORS)
    assert any('49,531,280, 60.9% removed' in n for n in summary['notes'])
    assert '49,531,280' in layer_summary.format_table(summary)
    entry = results.structure(model, pruned, model.default_deps)
    assert entry['flops'] == 49224080 and entry['flops_projection_2x2'] == 49531280
    assert entry['flops_removed_projection_2x2'] == pytest.approx(1 - 49531280 / AUTHORS)
    assert results.base_entry(model, 'base.hdf5', model.default_deps)[
        'flops_projection_2x2'] == AUTHORS
    assert 'flops_projection_2x2' not in results.structure(get_model('vc'), [8] * 13, [16] * 13)
