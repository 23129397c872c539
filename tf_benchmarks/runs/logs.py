"""Progress lines for long jobs, the originals' append-only log files, and the `LogBook` that rewinds
those files to a checkpoint's sizes so that a resumed run never repeats a line."""

import os
import sys
import time

from tf_benchmarks.core import workers


def cur_time():
    """The originals' timestamp: 2019,Jul,05,17:05:14."""
    return time.strftime('%Y,%b,%d,%X')


def log_important(message, log_file):
    """Print a message and append it to `log_file` (the originals' log_important)."""
    print(message)
    sys.stdout.flush()
    if not workers.writes_files():
        return
    if os.path.dirname(log_file):
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
    with open(log_file, 'a') as f:
        f.write(message + '\n')


class LogBook:
    """The append-only log files of a run, by path. `sizes()` is recorded with every checkpoint and
    at the start of every stage; `rewind(sizes)` cuts each file back to a recorded size, so the
    lines a killed run wrote after its last checkpoint are written once more, not twice.
    `stage_start` holds the sizes at the start of the running stage (set by the stage runner)."""

    def __init__(self, paths=()):
        self.paths = list(paths)
        self.stage_start = None

    def add(self, path):
        if path not in self.paths:
            self.paths.append(path)

    def sizes(self):
        return {p: os.path.getsize(p) if os.path.exists(p) else 0 for p in self.paths}

    def rewind(self, sizes):
        """Truncate every file to its size in `sizes` (files not named there: to empty)."""
        if not workers.writes_files():
            return
        for path in self.paths:
            size = int((sizes or {}).get(path, 0))
            if os.path.exists(path) and os.path.getsize(path) > size:
                with open(path, 'r+b') as f:
                    f.truncate(size)

    def rewind_to_stage_start(self):
        if self.stage_start is not None:
            self.rewind(self.stage_start)


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return '%dd%02dh' % (days, hours)
    if hours:
        return '%dh%02dm' % (hours, minutes)
    return '%dm%02ds' % (minutes, seconds)


class ProgressMeter:
    """Images/s over the last display window and an ETA for the remaining steps."""

    def __init__(self, total_steps, batch_size, start_step=0):
        self.total_steps = total_steps
        self.batch_size = batch_size
        self._last_step = start_step
        self._last_time = time.time()
        self.images_per_sec = 0.0

    def line(self, step, loss, top1, lr, extra=''):
        now = time.time()
        if step > self._last_step:
            self.images_per_sec = ((step - self._last_step) * self.batch_size /
                                   max(now - self._last_time, 1e-9))
        self._last_step, self._last_time = step, now
        remaining = (self.total_steps - step) * self.batch_size / max(self.images_per_sec, 1e-9)
        text = 'step %d/%d  images/sec: %.1f  loss %.4f  top1 %.3f  lr %.3g  ETA %s' % (
            step, self.total_steps, self.images_per_sec, loss, top1, lr,
            format_duration(remaining))
        return text + ('  ' + extra if extra else '')
