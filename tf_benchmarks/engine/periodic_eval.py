"""Evaluation during long runs (`--eval_every EPOCHS`): a training hook that, every N steps,
evaluates the current weights on the test split (CIFAR-10's test file, or the validation shards)
in a graph of its own, writes the figures to the run's TensorBoard events and log, and keeps them
(saved with every checkpoint) for the stage's entry in results.json."""

from tf_benchmarks.core import workers
from tf_benchmarks.engine.evaluation import Evaluator
from tf_benchmarks.engine.hooks import TrainHook


class PeriodicEvaluation(TrainHook):
    """`every` steps apart (0: never), on the chief only (the others' weights are the same)."""

    def __init__(self, model, deps, data_dir, every, batch_size, input_spec=None, log=print):
        self.model, self.deps, self.data_dir = model, deps, data_dir
        self.every, self.batch_size, self.input_spec, self.log = every, batch_size, input_spec, log
        self.history = []  # [step, top1, top5, loss]
        self.evaluator = None

    def begin(self, trainer):
        self.trainer = trainer

    def after_create_session(self, session, step):
        self.session = session

    def after_step(self, step, values):
        if self.every and step % self.every == 0 and workers.writes_files() and \
                not any(h[0] == step for h in self.history):
            self.evaluate(step)
        return False

    def evaluate(self, step):
        if self.evaluator is None:
            self.evaluator = Evaluator(self.model, self.deps, self.data_dir, self.batch_size,
                                       input_spec=self.input_spec)
        result = self.evaluator.evaluate(self.trainer.weights(self.session), 'the weights at step '
                                         '%d' % step)
        self.history.append([step, result.top1, result.top5, result.loss])
        self.trainer.add_scalars(step, {'eval/top1': result.top1, 'eval/top5': result.top5,
                                        'eval/loss': result.loss})
        self.log('step %d: eval top1 %.4f  top5 %.4f  loss %.4f  (%d images)'
                 % (step, result.top1, result.top5, result.loss, result.num_examples))

    def state(self):
        return {'history': self.history}

    def load_state(self, state):
        self.history = [list(h) for h in state['history']]

    def results(self):
        """The figures for results.json: [{'step', 'top1', 'top5', 'loss'}, ...]."""
        return [dict(zip(('step', 'top1', 'top5', 'loss'), h)) for h in self.history]
