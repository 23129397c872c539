"""The hook protocol of the training loop: what a method may add to every step (AOFP's search is a
hook; C-SGD's spread log is another)."""


class TrainHook:
    """Per-step extension of the training loop (AOFP's search runs as one)."""

    def begin(self, trainer):
        """The graph is built (inside `trainer.graph`); create extra ops and summaries here."""

    def after_create_session(self, session, step):
        """Variables are initialized or restored; `step` is the global step."""

    def replica_outputs(self, builder):
        """Called inside the replica step with that replica's builder: a list of scalar tensors
        (e.g. AOFP's metrics) to average over the replicas and fetch with every step, in place of
        `fetches()`; None for none."""
        return None

    def before_step(self, step):
        """Set this step's per-step state (e.g. assign AOFP's mask variables); may return extra
        feed_dict entries for the step."""
        return {}

    def fetches(self):
        """Extra tensors fetched with every training step (hooks without replica outputs)."""
        return {}

    def after_step(self, step, values):
        """Called with the fetched extra values (the averaged replica outputs, or `fetches()`);
        return True to end training after this step."""
        return False

    def finished(self):
        """True when the hook has ended training (checked on resume, so a finished run takes no
        further step)."""
        return False

    def state(self):
        """JSON-serializable state, saved with every checkpoint."""
        return None

    def load_state(self, state):
        """Restore what `state()` returned when resuming from a checkpoint."""

    def status(self):
        """Text appended to the progress line (e.g. current widths)."""
        return ''

    def masks(self):
        """Masks {layer: 0/1 vector} to store in snapshots, or None."""
        return None
