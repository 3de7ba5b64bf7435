"""What evaluate says about this machine: the CPU's instruction sets, the runtime and its version, and
the note when int8 gains little over float32 here (edge_signs/edge/cpu.py, evaluate.py).

No TensorFlow; /proc/cpuinfo stand-ins for an x86 server, a Pi 4 and a Pi 5.
"""

from __future__ import annotations

import re

import pytest

from edge_signs.edge import evaluate
from edge_signs.edge.cpu import CpuInfo, cpu_info, int8_advice
from edge_signs.edge.evaluate import ModelReport, evaluate_models, markdown_table, run_evaluation
from edge_signs.edge.runtime import find_backend

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8 avx512_fp16
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
"""


def _info(tmp_path, text: str) -> CpuInfo:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return cpu_info(path)


def test_cpu_flags_are_read_for_x86_and_arm(tmp_path):
    x86 = _info(tmp_path, X86)
    assert x86.model.startswith("Intel(R) Xeon(R)")
    assert x86.simd == ["avx2", "avx512f"] and x86.int8_dot == ["avx512_vnni", "avx_vnni", "amx_int8"]
    assert x86.half_float == ["avx512_fp16"]
    pi4, pi5 = _info(tmp_path, PI4), _info(tmp_path, PI5)
    assert pi4.model == "BCM2835" and pi4.simd == ["asimd"] and pi4.int8_dot == [] and pi4.half_float == []
    assert pi5.int8_dot == ["asimddp"] and pi5.half_float == ["asimdhp", "fphp"]
    assert "int8 dot product: none" in pi4.describe() and "int8 dot product: asimddp" in pi5.describe()


def test_cpu_without_cpuinfo_says_so(tmp_path):
    info = cpu_info(tmp_path / "missing")
    assert info.flags == frozenset() and info.int8_dot == []
    assert "instruction sets unknown" in info.describe()


def test_slow_int8_advice_names_what_the_cpu_lacks_and_what_helps(tmp_path):
    pi4, pi5, x86 = _info(tmp_path, PI4), _info(tmp_path, PI5), _info(tmp_path, X86)
    assert int8_advice(2.0, pi4) is None and int8_advice(3.5, x86) is None  # fast enough: nothing to say
    note = int8_advice(1.3, pi4)
    assert note.startswith("int8 is only 1.3x faster than float32 here (this CPU has no integer dot-product instructions)")
    assert "4x smaller" in note and "more --threads (one per core)" in note and "float16" not in note
    note = int8_advice(0.8, pi5)
    assert "(even with asimddp)" in note and "float16 (asimdhp, fphp present)" in note
    assert "(even with avx512_vnni, avx_vnni, amx_int8)" in int8_advice(1.9, x86)


@pytest.mark.parametrize("speedup, words", [
    (1.99, "int8 is only 2.0x faster than float32 here"),
    (1.3, "int8 is only 1.3x faster than float32 here"),
    (1.0, "int8 is no faster than float32 here"),
    (0.97, "int8 is no faster than float32 here"),
    (0.8, "int8 is 1.2x slower than float32 here"),
    (0.2, "int8 is 5.0x slower than float32 here"),
])
def test_slow_int8_note_reads_right_for_any_ratio(tmp_path, speedup, words):
    note = int8_advice(speedup, _info(tmp_path, PI4))
    assert note.startswith(words) and "0.2x faster" not in note


def _report(fmt: str, p50: float, backend: str = "ai-edge-litert 9.9.9") -> ModelReport:
    return ModelReport(model=f"m_{fmt}.tflite", format=fmt, backend=backend, size_mb=1.0, accuracy=0.9, loss=1.0,
                       agreement=1.0, latency_ms_p50=p50, latency_ms_p90=p50, threads=1, confusion=[[1, 0], [0, 1]])


def test_evaluate_names_the_runtime_with_its_version_and_the_cpu(tiny_models, signs):
    reports = evaluate_models([tiny_models["int8"]], signs.test.x[:8], signs.test.y[:8], runs=2, warmup=0, log=lambda m: None)
    backend = find_backend()
    assert reports[0].backend == str(backend) == f"{backend.name} {backend.version}"
    assert re.fullmatch(r"\S+ \d+\.\d+\S*", reports[0].backend)  # a version, not "unknown"
    last = markdown_table(reports).splitlines()[-1]
    assert last == f"Runtime: {backend}. CPU: {cpu_info().describe()}."
    # Two runtimes in one table (evaluate --backend): both named, each once.
    two = markdown_table([_report("float32", 2.0, "tflite-runtime 2.14.0"), _report("int8", 1.0), _report("int8", 1.0)])
    assert two.splitlines()[-1].startswith("Runtime: ai-edge-litert 9.9.9, tflite-runtime 2.14.0. CPU: ")


@pytest.mark.parametrize("speedup, noted", [(1.3, True), (2.5, False)])
def test_evaluate_notes_a_slow_int8(tiny_models, signs, monkeypatch, tmp_path, speedup, noted):
    pi4 = _info(tmp_path, PI4)
    monkeypatch.setattr(evaluate, "cpu_info", lambda: pi4)
    monkeypatch.setattr(evaluate, "int8_speedup", lambda reports: speedup)
    log: list[str] = []
    result = run_evaluation([tiny_models["float32"], tiny_models["int8"]], signs, runs=2, warmup=0, log=log.append)
    notes = [line for line in log if line.startswith("note: ")]
    advice = int8_advice(speedup, pi4)
    if noted:
        assert notes == [f"note: {advice}"] and f"\nNote: {advice}.\n" in result["markdown"]
        assert "1.3x faster than float32 here (this CPU has no integer dot-product instructions)" in advice
    else:
        assert notes == [] and "Note: " not in result["markdown"]
    assert result["cpu"] == pi4.describe()


def test_int8_speedup_needs_both_formats():
    assert evaluate.int8_speedup([_report("float32", 4.0), _report("int8", 2.0)]) == pytest.approx(2.0)
    assert evaluate.int8_speedup([_report("float16", 4.0), _report("int8", 2.0)]) is None
