"""The AOFP binary-search state machine on synthetic error streams (no graph)."""

import numpy as np
import pytest

from aofp.search import AofpSearch, calc_next_half_size


def test_calc_next_half_size_examples():
    assert [calc_next_half_size(s) for s in (64, 128, 512, 48, 40, 3, 2)] == \
        [32, 64, 256, 32, 16, 2, 1]
    with pytest.raises(ValueError):
        calc_next_half_size(1)


def _run(search, harm, steps, noise=0.0, seed=0):
    """Feed the metric sum(harm of the dropped filters) + noise for every layer, step by step."""
    rng = np.random.default_rng(seed)
    history = []
    for step in range(1, steps + 1):
        metrics = []
        for (base, dropped), h in zip(search.step_masks(), harm):
            assert (base[dropped] == 1).all()
            metrics.append(float(h[dropped].sum()) + noise * rng.uniform())
        search.record(step, metrics)
        history.append(search.widths)
        if search.terminated:
            break
    return history


def _search(widths, half=20, limit=0.01, target=0.99, start=0, **kwargs):
    total = float(sum(widths))
    return AofpSearch([np.ones(w, np.float32) for w in widths], half, limit, start,
                      lambda ws: 1 - sum(ws) / total, target, **kwargs)


def test_planted_harmless_filters_are_found_and_pruned():
    rng = np.random.default_rng(1)
    harmless = np.sort(rng.choice(32, 12, replace=False))
    harm = np.full(32, 0.01)
    harm[harmless] = 0.0
    search = _search([32], half=30, limit=0.002)
    _run(search, [harm], 2000, noise=0.001)
    pruned = np.flatnonzero(search.masks[0] < 0.5)
    assert len(pruned) >= 8
    assert set(pruned) <= set(harmless)


def test_a_layer_whose_every_filter_is_harmful_is_never_pruned():
    search = _search([16, 16], half=10)
    harm = [np.full(16, 0.05), np.full(16, 0.0)]
    history = _run(search, harm, 1500)
    assert all(w[0] == 16 for w in history)
    assert history[-1][1] == 1        # the harmless layer shrinks, to one filter at the least


def test_a_layer_never_goes_below_one_filter():
    search = _search([5, 1], half=3)
    history = _run(search, [np.zeros(5), np.zeros(1)], 500)
    assert min(w[0] for w in history) == 1 and history[-1] == [1, 1]
    assert all(w[1] == 1 for w in history)


def test_layers_start_staggered_and_halves_last_batches_per_half():
    search = _search([8, 8, 8, 8], half=40, start=100)
    history = _run(search, [np.zeros(8)] * 4, 200)
    # layer i first decides at step start + i * (half // 4) + half
    for layer, step in enumerate((140, 150, 160, 170)):
        assert history[step - 2][layer] == 8 and history[step - 1][layer] < 8


def test_never_dropped_filters_are_not_pruned_on_zero_evidence():
    """With one dropped filter per step and a 2-step half, most filters have no evidence."""
    search = _search([8], half=2, single_dropout=True, limit=0.5)
    _run(search, [np.zeros(8)], 2)
    assert search.widths == [8]


def test_flops_target_stops_right_after_the_move_that_reaches_it():
    search = _search([16, 16], half=10, target=0.4)
    history = _run(search, [np.zeros(16), np.zeros(16)], 1000)
    assert search.terminated
    removed = 1 - sum(history[-1]) / 32.0
    assert removed >= 0.4
    assert 1 - sum(history[-2]) / 32.0 < 0.4   # the previous step was still short of it


def test_state_round_trip_continues_identically():
    harm = [np.linspace(0, 0.02, 12), np.linspace(0.02, 0, 20)]
    a = _search([12, 20], half=7, limit=0.01)
    _run(a, harm, 60)
    b = _search([12, 20], half=7, limit=0.01)
    import json
    b.load_state(json.loads(json.dumps(a.state())))
    for step in range(61, 200):
        pa, pb = a.step_masks(), b.step_masks()
        for (x1, y1), (x2, y2) in zip(pa, pb):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
        metrics = [float(h[d].sum()) for (_, d), h in zip(pa, harm)]
        a.record(step, metrics)
        b.record(step, metrics)
    assert a.widths == b.widths and a.num_moves == b.num_moves


def test_halving_on_a_width_that_is_no_power_of_two_then_the_quit_reset():
    """24 filters, all harmful: the first half keeps calc_next_half_size(24) = 16, then 8, 4, 2, 1;
    at one filter the quit resets the search space to every alive filter."""
    search = _search([24], half=5, limit=-1.0)
    sizes = []
    for step in range(1, 5 * 6 + 1):
        (base, dropped), = search.step_masks()
        assert len(dropped) == len(search.layers[0].space) // 2
        search.record(step, [1.0])
        if step % 5 == 0:
            sizes.append(len(search.layers[0].space))
    assert sizes == [16, 8, 4, 2, 24, 16]
    assert search.widths == [24] and search.num_moves == 0
