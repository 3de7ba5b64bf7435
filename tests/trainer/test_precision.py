"""`train --precision`: what auto picks on each kind of device, and a bfloat16 run's float32 export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs.edge.cpu import CpuInfo  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer.callbacks import duration, time_left  # noqa: E402
from edge_signs.trainer.precision import Gpu, choose_precision  # noqa: E402
from edge_signs.trainer.quantize import quantize  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

AVX2 = CpuInfo("AMD EPYC", "x86_64", frozenset({"avx2", "fma"}))
SAPPHIRE_RAPIDS = CpuInfo("Intel Xeon", "x86_64", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}))
COOPER_LAKE = CpuInfo("Intel Xeon", "x86_64", frozenset({"avx2", "avx512f", "avx512_bf16"}))
GRAVITON3 = CpuInfo("Neoverse-V1", "aarch64", frozenset({"asimd", "asimddp", "bf16", "sve"}))
PI5 = CpuInfo("Cortex-A76", "aarch64", frozenset({"asimd", "asimddp", "asimdhp"}))
A100, T4, P100 = Gpu("NVIDIA A100", (8, 0)), Gpu("Tesla T4", (7, 5)), Gpu("Tesla P100", (6, 0))


@pytest.mark.parametrize("gpus, cpu, policy", [
    ([A100], AVX2, "mixed_float16"),
    ([A100, T4], SAPPHIRE_RAPIDS, "mixed_float16"),  # the GPUs train, whatever the CPU has
    ([P100], SAPPHIRE_RAPIDS, "float32"),  # no tensor cores: float16 gains nothing
    ([A100, P100], AVX2, "float32"),  # mirrored replicas compute alike: the slowest decides
    ([Gpu("unknown", None)], AVX2, "float32"),
    ([], SAPPHIRE_RAPIDS, "mixed_bfloat16"),
    ([], COOPER_LAKE, "float32"),  # AVX512-BF16 without AMX: measured slower than float32
    ([], GRAVITON3, "mixed_bfloat16"),
    ([], AVX2, "float32"),
    ([], PI5, "float32"),  # half floats, but no bfloat16
    ([], CpuInfo("unknown", "x86_64"), "float32"),  # no /proc/cpuinfo
])
def test_auto_picks_what_the_training_device_computes_natively(gpus, cpu, policy):
    chosen = choose_precision("auto", gpus=gpus, cpu=cpu)
    assert chosen.policy == policy and chosen.native and chosen.reason.startswith("auto: ")


def test_auto_says_why():
    assert "amx_bf16, avx512_bf16" in choose_precision("auto", gpus=[], cpu=SAPPHIRE_RAPIDS).reason
    assert "no bfloat16 instructions (none of amx_bf16, avx512_bf16)" in choose_precision("auto", gpus=[], cpu=AVX2).reason
    assert "Tesla P100 6.0" in choose_precision("auto", gpus=[P100], cpu=AVX2).reason
    assert "avx512_bf16 without amx_bf16 is slower than float32" in choose_precision("auto", gpus=[], cpu=COOPER_LAKE).reason


def test_asked_for_precisions_are_applied_and_emulation_is_flagged():
    assert choose_precision("float32", gpus=[A100], cpu=SAPPHIRE_RAPIDS).policy == "float32"
    on_cpu = choose_precision("mixed_float16", gpus=[], cpu=SAPPHIRE_RAPIDS)
    assert on_cpu.policy == "mixed_float16" and not on_cpu.native and "emulate" in on_cpu.reason
    assert choose_precision("mixed_float16", gpus=[T4], cpu=AVX2).native
    emulated = choose_precision("mixed_bfloat16", gpus=[], cpu=AVX2)
    assert emulated.policy == "mixed_bfloat16" and not emulated.native
    assert choose_precision("mixed_bfloat16", gpus=[], cpu=GRAVITON3).native
    without_amx = choose_precision("mixed_bfloat16", gpus=[], cpu=COOPER_LAKE)
    assert without_amx.policy == "mixed_bfloat16" and not without_amx.native and "not amx_bf16" in without_amx.reason
    with pytest.raises(EdgeSignsError, match="--precision float8: unknown"):
        choose_precision("float8", gpus=[], cpu=AVX2)


def test_precision_option_is_checked_and_the_old_flag_is_its_alias(tmp_path, signs_dir):
    with pytest.raises(EdgeSignsError, match="--precision must be one of auto, float32, mixed_float16, mixed_bfloat16"):
        TrainOptions(precision="half").validate()
    clash = run_cli("train", "--signs", signs_dir, "--out", tmp_path / "r", "--mixed-precision", "--precision", "float32")
    assert clash.returncode == 1 and clash.stderr.strip().splitlines() == [
        "edge-signs: error: --mixed-precision means --precision mixed_float16; it contradicts --precision float32"]


def test_tensorflows_pools_are_sized_to_the_cores_this_process_may_use():
    """In a fresh process, as a run starts; unset, TensorFlow reports 0 (its own choice, from the host's
    cores). A size the user set in TensorFlow's own variable is kept."""
    probe = ("from edge_signs.config import available_cores; from edge_signs.trainer import tf; "
             "print(available_cores(), tf.config.threading.get_intra_op_parallelism_threads(), "
             "tf.config.threading.get_inter_op_parallelism_threads())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
    cores, intra, inter = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert intra == inter == cores
    env["TF_NUM_INTRAOP_THREADS"] = "1"
    _, intra, inter = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert (intra, inter) == ("0", cores)


def test_time_left_reads_as_a_person_would_say_it():
    assert [duration(s) for s in (4.4, 89, 91, 754, 3599, 3930)] == ["4 s", "89 s", "2 min", "13 min", "1 h 00 min", "1 h 06 min"]


def test_time_left_is_not_inflated_by_the_epoch_that_traced_the_step():
    assert time_left([237.0], 58) == 237.0 * 58  # nothing else to go by yet
    assert time_left([237.0, 114.0, 110.0, 118.0], 56) == 114.0 * 56
    # a resumed run: its own first epoch traced again, mid-list
    assert time_left([230.0, 40.0, 41.0, 200.0, 39.0, 40.0], 10) == 40.0 * 10


@pytest.mark.slow
def test_a_bfloat16_run_saves_and_quantizes_the_same_float32_model(tmp_path, signs):
    lines: list[str] = []
    run = tmp_path / "bf16"
    result = train(TrainOptions(recipe="seed", limit=24, precision="mixed_bfloat16", overrides={"epochs": 2}), run, data=signs,
                   verbose=0, log=lines.append)
    assert result["precision"]["policy"] == "mixed_bfloat16"
    assert json.loads((run / "metrics.json").read_text())["precision"] == result["precision"]
    assert any(line.startswith("precision: mixed_bfloat16 (asked for") for line in lines)
    progress = [line for line in lines if line.startswith("epoch ")]
    assert progress[0].startswith("epoch 1/2: loss ") and "left)" in progress[0] and progress[1].startswith("epoch 2/2: ")
    model = keras.models.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert keras.mixed_precision.global_policy().name == "float32"  # the run leaves the process as it found it
    paths = quantize(run / "model.keras", ["int8"], data=signs, log=lambda m: None)  # calibrated and checked as any run's
    assert [Classifier(p).format for p in paths] == ["int8"]
    probs = Classifier(paths[0]).predict_batch(signs.test.x[:8])
    assert probs.shape == (8, 6) and np.isfinite(probs).all()
