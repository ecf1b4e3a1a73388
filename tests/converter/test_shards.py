"""Calibration shards (--jobs): contiguous shards of whole batches, merged exactly: the file of one process.

Most tests run the shards in this process (the serial executor, through the same shard function, the
portable reference and the merge) to stay quick; two run them in spawned worker processes, the path
``--jobs N`` takes. Ray is tested in test_executors.py (one Ray instance per module).
"""

from __future__ import annotations

import numpy as np
import pytest
from fp8_models import mlp, residual_cnn
from helpers import write_model_and_data

from fp8conv.converter import collection
from fp8conv.converter.data import open_samples
from fp8conv.converter.executors import SerialExecutor
from fp8conv.converter.pipeline import convert_file
from fp8conv.converter.shards import batch_sizes, plan_shards


def _chunked_data(tmp_path, sizes=(3, 5, 2), seed=1):
    """A directory of .npz chunks of ``sizes`` samples for residual_cnn's input [N, 3, 12, 12]."""
    folder = tmp_path / "chunks"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index, size in enumerate(sizes):
        np.savez(folder / f"part{index}.npz", input=rng.standard_normal((size, 3, 12, 12)).astype(np.float32))
    return folder


def _convert(source, data, path, **options):
    result = convert_file(source, path, data=data, audit=False, **options)
    return path.read_bytes(), [record.to_json() for record in result.activations]


@pytest.fixture
def in_process(monkeypatch):
    """Shards run by the serial executor: the shard code path without spawning processes."""
    monkeypatch.setattr(collection, "make_executor", lambda kind, jobs: SerialExecutor(jobs))


def test_shards_are_contiguous_runs_of_the_single_process_batches(tmp_path):
    samples = open_samples(_chunked_data(tmp_path), ["input"])
    # chunks 3, 5, 2 in batches of 4: [3] [4, 1] [2]
    assert batch_sizes(samples, 4, 10) == [3, 4, 1, 2]
    shards = plan_shards(samples, 4, 10, 3)
    assert [(shard.start, shard.stop) for shard in shards] == [(0, 3), (3, 7), (7, 10)]
    assert [shard.index for shard in shards] == [0, 1, 2]
    whole = [batch["input"] for batch in samples.batches(4)]
    from_shards = [batch["input"] for shard in shards for batch in shard.samples.batches(4)]
    assert len(whole) == len(from_shards) == 4
    for a, b in zip(whole, from_shards, strict=True):
        assert np.array_equal(a, b)


def test_max_samples_cuts_the_batches_and_more_jobs_than_batches_give_fewer_shards(tmp_path):
    samples = open_samples(_chunked_data(tmp_path), ["input"])
    assert batch_sizes(samples, 4, 6) == [3, 3]
    assert [(s.start, s.stop) for s in plan_shards(samples, 4, 6, 8)] == [(0, 3), (3, 6)]
    assert [(s.start, s.stop) for s in plan_shards(samples, 2, 10, 100)] == [
        (0, 2), (2, 3), (3, 5), (5, 7), (7, 8), (8, 10)
    ]  # fmt: skip


def test_a_selection_of_arrays_in_memory_pickles_only_its_slice():
    import pickle

    x = np.arange(1000 * 8, dtype=np.float32).reshape(1000, 8)
    samples = open_samples({"input": x}, ["input"])
    part = samples.select(10, 20)
    copied = pickle.loads(pickle.dumps(part))
    assert copied.num_samples == 10
    assert np.array_equal(next(copied.batches(100))["input"], x[10:20])
    assert len(pickle.dumps(part)) < x.nbytes // 20


@pytest.mark.parametrize(
    "options",
    [
        {"activations_range": "mse"},
        {"activations_range": "minmax"},
        {"activations_range": "percentile", "percentile": 99.0},
        {"activations_range": "entropy"},
        {"activations_range": "fp8", "auto_int16": 60.0},
    ],
    ids=["mse", "minmax", "percentile", "entropy", "fp8+auto_int16"],
)
def test_every_range_method_gives_the_same_file_with_2_and_3_shards(tmp_path, in_process, options):
    source, _ = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    data = _chunked_data(tmp_path, sizes=(7, 9, 4))
    single = _convert(source, data, tmp_path / "j1.onnx", calibration_batch_size=3, **options)
    for jobs in (2, 3):
        sharded = _convert(source, data, tmp_path / f"j{jobs}.onnx", calibration_batch_size=3, jobs=jobs, **options)
        assert sharded[1] == single[1]
        assert sharded[0] == single[0]


def test_auto_int16_promotes_the_same_tensors_with_shards(tmp_path, in_process):
    source, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    results = [
        convert_file(source, tmp_path / f"j{jobs}.onnx", data=data, audit=False, auto_int16=60.0, jobs=jobs)
        for jobs in (1, 3)
    ]
    assert results[0].auto_int16, "the threshold is meant to promote something"
    assert results[0].auto_int16 == results[1].auto_int16


def test_more_jobs_than_samples_and_shards_smaller_than_a_batch(tmp_path, in_process):
    source, _ = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    data = _chunked_data(tmp_path, sizes=(2, 1))
    single = _convert(source, data, tmp_path / "j1.onnx", calibration_batch_size=8)
    assert _convert(source, data, tmp_path / "j8.onnx", calibration_batch_size=8, jobs=8) == single
    # three samples, one per shard, each shard smaller than a batch of 2
    single = _convert(source, data, tmp_path / "b1.onnx", calibration_batch_size=1)
    assert _convert(source, data, tmp_path / "b3.onnx", calibration_batch_size=1, jobs=5) == single


def test_in_process_shards_report_each_shard(tmp_path, in_process):
    from fp8conv.config import ConversionConfig
    from fp8conv.passes.plan import plan_conversion

    source, data = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    from fp8conv import load

    model = load(source).model
    config = ConversionConfig(jobs=3, calibration_batch_size=4)
    collector = collection.StatisticsCollector(model, plan_conversion(model, config), config)
    statistics = collector.collect(open_samples(data, ["input"]))
    assert [result.index for result in collector.shard_results] == [0, 1, 2]
    assert (
        sum(next(iter(r.statistics.values())).count for r in collector.shard_results)
        == next(iter(statistics.values())).count
    )


def test_worker_processes_give_the_file_of_one_process(tmp_path):
    """--jobs 2 and 3 in spawned processes: files read in the workers, windows across chunk boundaries."""
    source, _ = write_model_and_data(tmp_path, residual_cnn(batch="N"))
    data = _chunked_data(tmp_path, sizes=(3, 5, 2))
    single = _convert(source, data, tmp_path / "j1.onnx", calibration_batch_size=4)
    assert _convert(source, data, tmp_path / "j3.onnx", calibration_batch_size=4, jobs=3) == single
    percentile = {"activations_range": "percentile", "percentile": 99.9}
    single = _convert(source, data, tmp_path / "p1.onnx", calibration_batch_size=4, **percentile)
    assert _convert(source, data, tmp_path / "p2.onnx", calibration_batch_size=4, jobs=2, **percentile) == single


def test_worker_processes_read_samples_given_in_memory(tmp_path):
    source, _ = write_model_and_data(tmp_path, mlp())
    x = np.random.default_rng(3).standard_normal((20, 32)).astype(np.float32)
    single = _convert(source, {"input": x}, tmp_path / "j1.onnx")
    assert _convert(source, {"input": x}, tmp_path / "j2.onnx", jobs=2) == single
