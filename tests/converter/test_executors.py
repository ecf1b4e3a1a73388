"""The executor seam: serial, local processes (spawn) and Ray tasks map a function over items, in item order.

Ray runs on one local instance for the whole module (``ray.init(num_cpus=2)``, started by the first test that
needs it, shut down after the last); the functions mapped are importable in any worker (``operator.mul``,
fp8conv's shard function).
"""

from __future__ import annotations

import operator
import sys

import pytest
from click.testing import CliRunner
from fp8_models import residual_cnn
from helpers import refused_in_one_line, write_model_and_data

from fp8conv.cli import cli
from fp8conv.converter.counting import StatisticsLayout
from fp8conv.converter.data import open_samples
from fp8conv.converter.executors import RAY_MISSING, ProcessExecutor, RayExecutor, SerialExecutor, make_executor
from fp8conv.converter.pipeline import convert_file
from fp8conv.converter.shards import ShardContext, calibrate_shard, plan_shards
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.reference import PortableReference


@pytest.fixture(scope="module")
def ray_instance():
    import ray  # in the test extra: never skipped

    ray.init(
        num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield ray
    ray.shutdown()


def _broken_shard(tmp_path):
    """A shard whose reference bytes onnxruntime refuses: the worker raises Fp8ConvError."""
    _, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    samples = open_samples(data, ["input"])
    reference = PortableReference(b"not a model", None, {}, {}, ("logits",))
    context = ShardContext(reference, StatisticsLayout({}, {}), 4, 1, 1)
    return context, plan_shards(samples, 4, samples.num_samples, 2)


def test_make_executor_picks_serial_for_one_local_job_and_refuses_unknown_kinds():
    assert isinstance(make_executor("local", 1), SerialExecutor)
    assert isinstance(make_executor("local", 3), ProcessExecutor)
    with pytest.raises(Fp8ConvError, match="unknown executor 'dask'"):
        make_executor("dask", 2)
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        ProcessExecutor(0)


@pytest.mark.parametrize("executor", [SerialExecutor(1), ProcessExecutor(2)], ids=["serial", "processes"])
def test_results_come_in_item_order_and_done_is_called_for_each(executor):
    finished = []
    with executor:
        results = executor.map(operator.mul, 3, [1, 2, 3, 4, 5], lambda index, result: finished.append((index, result)))
    assert results == [3, 6, 9, 12, 15]
    assert sorted(finished) == [(0, 3), (1, 6), (2, 9), (3, 12), (4, 15)]
    assert executor.map(operator.mul, 3, []) == []


def test_a_worker_process_error_is_the_one_line_error_it_raised(tmp_path):
    context, shards = _broken_shard(tmp_path)
    with pytest.raises(Fp8ConvError, match=r"^onnxruntime cannot load the model"):
        ProcessExecutor(1).map(calibrate_shard, context, shards)


def test_ray_tasks_return_in_item_order_and_leave_the_callers_ray_running(ray_instance):
    finished = []
    with RayExecutor(2) as executor:
        results = executor.map(operator.mul, 3, [1, 2, 3, 4, 5], lambda index, result: finished.append(index))
    assert results == [3, 6, 9, 12, 15]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert ray_instance.is_initialized()  # it was running before: the executor did not start it, nor stop it


def test_a_ray_task_error_is_the_one_line_error_it_raised(tmp_path, ray_instance):
    context, shards = _broken_shard(tmp_path)
    with pytest.raises(Fp8ConvError, match=r"^onnxruntime cannot load the model") as caught:
        RayExecutor(2).map(calibrate_shard, context, shards)
    assert "\n" not in str(caught.value)


def test_ray_shards_give_the_file_of_one_process(tmp_path, ray_instance):
    source, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    files = []
    for jobs, executor in ((1, "local"), (2, "ray"), (3, "ray")):
        result = convert_file(
            source, tmp_path / f"{executor}{jobs}.onnx", data=data, audit=False, jobs=jobs, executor=executor
        )
        files.append((result.output_path.read_bytes(), [record.to_json() for record in result.activations]))
    assert files[1] == files[0]
    assert files[2] == files[0]


def test_without_ray_the_ray_executor_is_refused_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(Fp8ConvError) as caught:
        make_executor("ray", 2)
    assert str(caught.value) == RAY_MISSING
    source, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--executor", "ray", "--no-verify"])
    refused_in_one_line(outcome, "--executor ray", "pip install fp8conv[ray]")
    assert not (tmp_path / "model.int8.onnx").exists()
    with pytest.raises(Fp8ConvError, match=r"pip install fp8conv\[ray\]"):
        convert_file(source, data=data, executor="ray")


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["--jobs", "0"], ("--jobs", "0")),
        (["--jobs", "two"], ("--jobs", "two")),
        (["--executor", "dask"], ("--executor", "dask")),
    ],
)
def test_bad_jobs_and_executor_values_are_one_line_exit_2(tmp_path, args, parts):
    source, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--no-verify", *args])
    refused_in_one_line(outcome, *parts)


@pytest.mark.parametrize("args", [["--jobs", "2"], ["--executor", "local"]])
def test_jobs_and_executor_without_data_are_refused(tmp_path, args):
    source, _ = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    outcome = CliRunner().invoke(cli, [str(source), "--no-verify", *args])
    refused_in_one_line(outcome, args[0], "needs calibration data", "--data")
