"""The checkpoint format: a directory `ckpt-<step>/` per checkpoint in a run's train directory.

Each holds the TF variables (weights, optimizer slots, global step, BN statistics) and state.json
(the hooks' state, e.g. AOFP's search, and the sizes of the run's log files). It is written under a
temporary name and renamed, so it is whole or absent; the two newest are kept. The input stream's
position is the global step (see data/input_pipeline.py).
"""

import json
import os
import re
import shutil

import tensorflow.compat.v1 as tf

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError, cannot_write_message, write_failure_reason
from tf_benchmarks.core.faults import crash_point

_CKPT_DIR = re.compile(r'^ckpt-(\d+)$')


class CheckpointDir:
    """The checkpoints of one train directory."""

    def __init__(self, train_dir):
        self.train_dir = train_dir

    def complete(self):
        """{step: directory} of the complete checkpoints."""
        found = {}
        if os.path.isdir(self.train_dir):
            for name in os.listdir(self.train_dir):
                match = _CKPT_DIR.match(name)
                if match:
                    found[int(match.group(1))] = os.path.join(self.train_dir, name)
        return found

    def save(self, saver, session, step, state):
        """Write ckpt-<step>/ (the variables through `saver`, and `state` as state.json), unless it
        exists or this worker does not write; then keep only the two newest checkpoints."""
        final = os.path.join(self.train_dir, 'ckpt-%d' % step)
        if os.path.isdir(final) or not workers.writes_files():
            return
        tmp = os.path.join(self.train_dir, '.ckpt-%d.tmp-%d' % (step, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            os.makedirs(tmp)
            saver.save(session, os.path.join(tmp, 'model'), write_meta_graph=False,
                       write_state=False)
            with open(os.path.join(tmp, 'state.json'), 'w') as f:
                json.dump(state, f)
            crash_point('checkpoint_write')
            os.replace(tmp, final)
        except tf.errors.OpError as e:
            raise UserError(cannot_write_message(final, write_failure_reason(e.message)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        found = self.complete()
        for old in sorted(found)[:-2]:
            shutil.rmtree(found[old], ignore_errors=True)

    def newest(self, num_hooks):
        """(directory, state) of the newest checkpoint, or None; half-written ones are removed.
        A state that does not hold `num_hooks` hook states is refused."""
        if os.path.isdir(self.train_dir) and workers.writes_files():
            for name in os.listdir(self.train_dir):
                if name.startswith('.ckpt-'):
                    shutil.rmtree(os.path.join(self.train_dir, name), ignore_errors=True)
        found = self.complete()
        if not found:
            return None
        directory = found[max(found)]
        try:
            with open(os.path.join(directory, 'state.json')) as f:
                state = json.load(f)
            hook_states, _ = state['hooks'], state['logs']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError('checkpoint %s has no readable state (%s); it was not written by this '
                            'version. Remove that directory to resume from an older checkpoint, or '
                            'restart the stage with --restart_from' % (directory, e))
        if len(hook_states) != num_hooks:
            raise UserError('checkpoint %s holds the state of %d hooks, this run has %d; restart '
                            'the stage with --restart_from' % (directory, len(hook_states),
                                                                num_hooks))
        return directory, state

    @staticmethod
    def restore(saver, session, directory):
        """Restore the variables of the checkpoint in `directory`."""
        try:
            saver.restore(session, os.path.join(directory, 'model'))
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
                tf.errors.DataLossError) as e:
            raise UserError('checkpoint %s does not fit this model (%s); restart the stage with '
                            '--restart_from' % (directory, e.message.splitlines()[0]))
