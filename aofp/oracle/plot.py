"""One PNG per layer for `oracle`: AOFP's estimate and, alongside, the kernel L1 norm of every filter
against the oracle's loss increase (matplotlib's Agg canvas, no display needed)."""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aofp.oracle.compare import least_important


def _panel(ax, x, y, half, title, ylabel):
    y = np.asarray([np.nan if v is None else v for v in y], dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    rest = np.setdiff1d(np.arange(len(x)), half)
    ax.scatter(x[half], y[half], s=18, color='tab:blue',
               label="oracle's least important half")
    ax.scatter(x[rest], y[rest], s=18, color='tab:orange', label='other filters')
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('oracle: loss increase, filter removed alone')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')


def _rho(layer, name):
    value = layer['spearman'][name]['oracle_loss']
    return 'n/a' if value is None else '%.2f' % value


def layer_png(result, layer_key):
    """PNG bytes of one layer's two scatter plots."""
    layer = result['layers'][layer_key]
    filters = layer['filters']
    loss = filters['oracle_loss_increase']
    half = np.asarray(least_important(loss, len(loss) // 2), dtype=int)
    fig = Figure(figsize=(10, 4), dpi=72)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _panel(left, loss, filters['aofp_estimate'], half,
           'AOFP estimate (%d steps), Spearman %s' % (result['aofp_estimate']['steps'],
                                                     _rho(layer, 'aofp')),
           'AOFP: mean next-layer error when dropped')
    _panel(right, loss, filters['l1'], half, 'kernel L1 norm, Spearman %s' % _rho(layer, 'l1'),
           'L1 norm of the filter')
    fig.suptitle('%s conv%s (%d filters): filter scores against the oracle on %d test images'
                 % (result['model'], layer_key, layer['width'], result['oracle']['test_images']),
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    out = io.BytesIO()
    fig.savefig(out, format='png', metadata={'Software': None})
    return out.getvalue()
