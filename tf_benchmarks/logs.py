"""Progress lines for long jobs and the originals' append-only log files."""

import os
import sys
import time


def cur_time():
    """The originals' timestamp: 2019,Jul,05,17:05:14."""
    return time.strftime('%Y,%b,%d,%X')


def log_important(message, log_file):
    """Print a message and append it to `log_file` (the originals' log_important)."""
    print(message)
    sys.stdout.flush()
    if os.path.dirname(log_file):
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
    with open(log_file, 'a') as f:
        f.write(message + '\n')


def log_has_line(log_file, predicate):
    """Whether `log_file` already holds a line for which `predicate(line)` is true (how resumed
    stages know what a previous run already logged)."""
    if not os.path.exists(log_file):
        return False
    with open(log_file) as f:
        return any(predicate(line) for line in f)


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
