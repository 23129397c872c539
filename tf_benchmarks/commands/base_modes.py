"""The run skeleton both methods share: training a base model from scratch as one stage (`train`), and evaluating a file into a record line (`eval`). Each method
passes in what differs: its training config, its evaluation (AOFP's masked files) and its record
line, which keeps the format of that method's original."""

from tf_benchmarks.data import input_pipeline, records
from tf_benchmarks.engine.train_config import check_steps
from tf_benchmarks.engine.trainer import train_to_file
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.runs.logs import log_important
from tf_benchmarks.runs.stages import Stage, StageRunner


def train_base(model, deps, data_dir, make_config, stage_settings, restart_from=None, log=print):
    """`train`: `model` at `deps` from scratch -> <model>_scratch_savedweights.hdf5, as one stage
    (`train` in run.json) whose settings are `stage_settings` plus the model, widths and data.
    `make_config(num_examples)` gives the TrainConfig."""
    model.check_deps(deps)  # bad widths or data stop before run.json
    data = input_pipeline.check_data(data_dir)  # bad data stops before run.json, too
    config = check_steps(make_config(data.num_examples), data.num_examples, '`train`',
                         '--max_epochs')

    def run():
        train_to_file(model, deps, data, config, model.scratch_train_dir, model.scratch_weights,
                      log=log)
    stage = Stage('train', dict(model=model.name, deps=deps, **stage_settings,
                                **records.data_settings(data_dir)),
                  run, outputs=[model.scratch_weights], work_dirs=[model.scratch_train_dir])
    StageRunner([stage], restart_from=restart_from, log=log).run()
    return model.scratch_weights


def eval_file(model, path, data_dir, batch_size, evaluate, console_line, record_line, records_file,
              log=print):
    """`eval FILE`: rebuild the model from the file's widths, evaluate the test split with
    `evaluate(model, weight_file, data_dir, batch_size, path)`, print `console_line(result, deps)`
    and append `record_line(path, result)` to `records_file`."""
    weight_file = hdf5_io.read_hdf5(path)
    result = evaluate(model, weight_file, data_dir, batch_size, path)
    log(console_line(result, list(model.file_deps(weight_file))))
    log_important(record_line(path, result), records_file)
    return result
