"""AOFP to a latency target (`prune --target_latency_ms`): the per-layer latency table the search
stops on (`--latency_table FILE`, or measured from the start file into the working directory by the
run's first stage, `latency_table`), the search's stop rule (the table's prediction at or below the
iteration's target) and, after the search, the pruned widths measured on this machine against the
prediction."""

import dataclasses
from typing import Optional, Tuple

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy import latency_table
from tf_benchmarks.files.atomic import file_digest
from tf_benchmarks.network.input_spec import InputSpec


@dataclasses.dataclass
class LatencyTarget:
    """ms per call at `batch` for each iteration; the table file (None: measure one in the run)."""
    targets_ms: Tuple[float, ...]
    batch: int
    calls: int
    table_file: Optional[str] = None
    few_calls: bool = False   # accept a table whose entries are medians of fewer than 50 calls

    def run_table(self, model):
        """The table the run measures when no --latency_table is given."""
        return '%s_latency_table.json' % model.name


class TargetSearch:
    """One run's use of the table: loaded once, checked against the run's model and start."""

    def __init__(self, target, model, image_size, num_logits, log):
        self.target = target
        self.model = model
        self.image_size = image_size
        self.num_logits = num_logits
        self.log = log
        self.path = target.table_file or target.run_table(model)
        self._table = None

    def settings(self):
        """What shapes the search's result: the targets, batch and the given table's digest."""
        out = dict(target_latency_ms=list(self.target.targets_ms), latency_batch=self.target.batch)
        if self.target.table_file:
            out.update(latency_table=self.target.table_file,
                       latency_table_sha256=file_digest(self.target.table_file))
        return out

    def measure_stage(self, base_file):
        """The `latency_table` stage: the table of the start file's model at its widths."""
        latency_table.write_table_from_file(base_file, self.path, self.target.batch,
                                            self.target.calls, self.model.name, self.log)

    def table(self, start_deps=None):
        if self._table is None:
            self._table = latency_table.read_table(self.path)
            self._table.digest = file_digest(self.path)
            if self._table.min_calls < latency_table.MIN_CALLS and not self.target.few_calls:
                raise UserError('latency table %s has entries timed over %d calls; a target needs '
                                'medians of at least %d (measure it again, or pass '
                                '--latency_few_calls to accept it)'
                                % (self.path, self._table.min_calls, latency_table.MIN_CALLS))
        if start_deps is not None:
            self._table.check_model(self.model, start_deps, self.image_size, self.target.batch)
        return self._table

    def predict(self, deps):
        return self.table().predict(self.model, deps)['ms']

    def measured(self, deps, spec: InputSpec):
        """(ms of `deps`, ms of the table's widths) measured now, interleaved."""
        table = self.table()
        return latency_table.measure_whole(self.model, [deps, table.widths], self.num_logits,
                                           spec, self.target.batch, self.target.calls)

    def report(self, k, deps, spec, reached):
        """The tuned phase's `latency_target` entry and its log line, after the search."""
        target_ms = self.target.targets_ms[k]
        predicted = self.predict(deps)
        measured, table_now = self.measured(deps, spec)
        table = self.table()
        # the prediction scaled by how much faster or slower the table's own widths run now than
        # when the table was measured (a shared machine's load moves between the two)
        rescaled = predicted * table_now / table.whole_ms
        entry = dict(target_ms=target_ms, batch=self.target.batch, predicted_ms=predicted,
                     measured_ms=measured, prediction_error=predicted / measured - 1,
                     rescaled_prediction_ms=rescaled,
                     rescaled_prediction_error=rescaled / measured - 1,
                     reached=bool(reached), table=self.path, table_sha256=table.digest,
                     table_whole_ms=table.whole_ms, table_widths_measured_now_ms=table_now,
                     calls=self.target.calls)
        line = ('latency target: predicted %.3f ms %s target %.3f ms at batch %d (table %s); '
                'measured %.3f ms, the prediction %+.1f%% off; the table\'s widths measured now '
                '%.3f ms (in the table %.3f ms), so rescaled to now %.3f ms, %+.1f%% off'
                % (predicted, '<=' if predicted <= target_ms else '>', target_ms,
                   self.target.batch, self.path, measured, 100 * entry['prediction_error'],
                   table_now, table.whole_ms, rescaled, 100 * entry['rescaled_prediction_error']))
        return entry, line


def parse_targets(values, iterations_flag='--itr_schedule'):
    """Positive finite ms targets, one per iteration."""
    if not values or any(not v > 0 for v in values):
        raise UserError('--target_latency_ms takes positive milliseconds per call, one per '
                        'iteration (they replace %s), e.g. 4.5 or 6,4.5' % iterations_flag)
    return tuple(values)
