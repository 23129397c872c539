"""The run skeleton both methods share: training a base model from scratch as one stage (`train`), and evaluating a file into a record line (`eval`). Each method
passes in what differs: its training config, its evaluation (AOFP's masked files) and its record
line, which keeps the format of that method's original."""

from tf_benchmarks.commands import recipe
from tf_benchmarks.data import sources
from tf_benchmarks.engine.train_config import check_steps
from tf_benchmarks.engine.trainer import train_to_file
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.runs.logs import log_important
from tf_benchmarks.runs.stages import Stage, StageRunner


def train_base(model, deps, data_dir, make_config, stage_settings, restart_from=None, log=print,
               input_spec=None, make_hooks=None):
    """`train`: `model` at `deps` from scratch -> <model>_scratch_savedweights.hdf5, as one stage
    (`train` in run.json) whose settings are `stage_settings` plus the model, widths and data.
    `make_config(num_examples)` gives the TrainConfig; `input_spec` the input (image size and
    normalization), recorded in the file where it is not the model's default; `make_hooks(
    num_examples)` extra training hooks (evaluation during training)."""
    model.check_deps(deps)  # bad widths or data stop before run.json
    data = sources.check_data(data_dir, input_spec)  # bad data stops before run.json, too
    config = check_steps(make_config(data.num_examples), data.num_examples, '`train`',
                         '--max_epochs')

    def run():
        train_to_file(model, deps, data, config, model.scratch_train_dir, model.scratch_weights,
                      log=log, input_spec=recipe.stored_spec(input_spec, model)
                      if input_spec else None,
                      hooks=make_hooks(data.num_examples) if make_hooks else (),
                      class_names=sources.class_names(data_dir))
    stage = Stage('train', dict(model=model.name, deps=deps, **stage_settings,
                                **sources.data_settings(data_dir)),
                  run, outputs=[model.scratch_weights], work_dirs=[model.scratch_train_dir])
    StageRunner([stage], restart_from=restart_from, log=log,
                network=None if model.builtin else model.network).run()
    return model.scratch_weights


def eval_file(model, path, data_dir, batch_size, evaluate, console_line, record_line, records_file,
              log=print):
    """`eval FILE`: rebuild the model from the file's widths, evaluate the test split with
    `evaluate(model, weight_file, data_dir, batch_size, path)`, print `console_line(result, deps,
    image_size)` (the size the file's input spec gives, for its FLOPs)
    and append `record_line(path, result)` to `records_file`."""
    weight_file = hdf5_io.read_hdf5(path)
    result = evaluate(model, weight_file, data_dir, batch_size, path)
    spec = weight_file.input_spec
    log(console_line(result, list(model.file_deps(weight_file)),
                     spec.image_size if spec else None))
    log_important(record_line(path, result), records_file)
    return result
