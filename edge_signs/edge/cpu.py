"""What this CPU can do fast: the instruction sets that decide int8 and float16 speed.

int8 inference gains most where the CPU has integer dot-product instructions
(x86: AVX-512 VNNI or AVX-VNNI, AMX; Arm: the dot-product extension, "asimddp",
which the Pi 5's Cortex-A76 has and the Pi 4's Cortex-A72 lacks). float16 gains
where the CPU does half-precision arithmetic natively (Arm "asimdhp"/"fphp").
Read from /proc/cpuinfo (Linux); elsewhere only the machine type is known.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

# The flags worth naming, in the order they are listed.
INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
HALF_FLOAT = ("asimdhp", "fphp", "avx512_fp16")
SIMD = ("avx2", "avx512f", "asimd", "neon")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    machine: str
    flags: frozenset = field(default_factory=frozenset)

    @property
    def int8_dot(self) -> list[str]:
        return [f for f in INT8_DOT if f in self.flags]

    @property
    def half_float(self) -> list[str]:
        return [f for f in HALF_FLOAT if f in self.flags]

    @property
    def simd(self) -> list[str]:
        return [f for f in SIMD if f in self.flags]

    def describe(self) -> str:
        known = bool(self.flags)
        parts = [f"{self.model} ({self.machine})"]
        if known:
            parts.append(f"SIMD: {', '.join(self.simd) or 'none'}")
            parts.append(f"int8 dot product: {', '.join(self.int8_dot) or 'none'}")
            parts.append(f"half floats: {', '.join(self.half_float) or 'none'}")
        else:
            parts.append("instruction sets unknown (no /proc/cpuinfo)")
        return "; ".join(parts)


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU model and flags."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features"):  # x86 says flags, Arm says Features
            flags.update(value.split())
    return CpuInfo(model or platform.processor() or "unknown CPU", platform.machine(), frozenset(flags))


def int8_advice(speedup: float, info: CpuInfo) -> str | None:
    """A note when int8 gains little over float32 on this CPU, and what helps instead."""
    if speedup >= 2.0:
        return None
    why = ("this CPU has no integer dot-product instructions" if not info.int8_dot
           else f"even with {', '.join(info.int8_dot)}")
    helps = ["more --threads (one per core)"]
    if info.half_float:
        helps.append(f"float16 ({', '.join(info.half_float)} present)")
    return (f"{int8_speed_words(speedup)} here ({why}); it still makes the file 4x smaller. "
            f"What helps speed on this CPU: {', '.join(helps)}")


def int8_speed_words(speedup: float) -> str:
    """int8 against float32 in words that read right either side of 1x: "only 1.3x faster", "5.0x slower"."""
    if speedup >= 1.05:
        return f"int8 is only {speedup:.1f}x faster than float32"
    if speedup > 1 / 1.05:
        return "int8 is no faster than float32"
    return f"int8 is {1 / speedup:.1f}x slower than float32"
