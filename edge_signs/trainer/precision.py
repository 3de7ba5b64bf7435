"""Which numeric precision a training run computes in, and why.

``auto`` picks what is fast *and* native on the device that trains:

    NVIDIA GPU, compute capability >= 7.0   mixed_float16 (tensor cores)
    CPU with AMX-BF16 (x86) or BF16 (arm64)  mixed_bfloat16 (oneDNN's bf16 kernels)
    anything else                            float32

AVX512-BF16 alone (Cooper Lake, Zen 4) is not enough: with oneDNN held to those kernels
(ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) a ResNet50 step took 0.68 s in bfloat16 against 0.58 s
in float32 on the same CPU (docs/training.md); only AMX's tile multiplies make it pay.

Emulated low precision is slower than float32 (bfloat16 on an AVX2-only CPU ran a
ResNet50 step 3.8x slower, docs/results.md), so ``auto`` never picks it; asking for
it by name still applies it, with a warning. Under either mixed policy the
variables, batch-norm statistics and the softmax stay float32, and the saved model
is rebuilt in float32, so ``quantize`` sees the same model whatever trained it.

The decision is a pure function of what the device reports, so every branch is
tested without the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_signs.config import PRECISIONS
from edge_signs.edge.cpu import CpuInfo
from edge_signs.errors import EdgeSignsError

FAST_FLOAT16_CAPABILITY = (7, 0)  # Volta: the first NVIDIA GPUs with tensor cores
X86_BF16 = ("amx_bf16", "avx512_bf16")
X86_FAST_BF16 = ("amx_bf16",)  # what auto needs on x86 (module docstring)
ARM_BF16 = ("bf16",)  # /proc/cpuinfo "Features" on Armv8.6 cores (Graviton3, Neoverse V1/V2)


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: tuple[int, int] | None  # None: not reported


@dataclass(frozen=True)
class Precision:
    policy: str  # a Keras dtype policy name
    reason: str
    native: bool = True  # False: slower than float32 on this device (emulated, or bf16 without AMX)

    def as_dict(self) -> dict:
        return {"policy": self.policy, "reason": self.reason, "native": self.native}


def _is_arm(cpu: CpuInfo) -> bool:
    return cpu.machine.lower() in ("aarch64", "arm64")


def bf16_flags(cpu: CpuInfo) -> list[str]:
    """The CPU's bfloat16 instruction sets, by the flag names of its architecture."""
    return [f for f in (ARM_BF16 if _is_arm(cpu) else X86_BF16) if f in cpu.flags]


def choose_precision(requested: str, *, gpus: list[Gpu], cpu: CpuInfo) -> Precision:
    """The policy a run uses for ``requested`` (one of PRECISIONS) on these devices."""
    if requested not in PRECISIONS:
        raise EdgeSignsError(f"--precision {requested}: unknown (expected one of {', '.join(PRECISIONS)})")
    fast_gpus = [g for g in gpus if g.compute_capability is not None and g.compute_capability >= FAST_FLOAT16_CAPABILITY]
    bf16 = bf16_flags(cpu)
    if requested == "float32":
        return Precision("float32", "asked for (--precision float32)")
    if requested == "mixed_float16":
        if gpus and len(fast_gpus) == len(gpus):
            return Precision("mixed_float16", f"asked for; {_gpu_names(gpus)} compute float16 natively")
        where = f"{_gpu_names(gpus)} lack fast float16" if gpus else "there is no GPU: CPUs emulate float16"
        return Precision("mixed_float16", f"asked for, but {where}; slower than float32", native=False)
    if requested == "mixed_bfloat16":
        if gpus:
            return Precision("mixed_bfloat16", f"asked for, on {_gpu_names(gpus)}", native=bool(fast_gpus))
        if _fast_bf16(cpu):
            return Precision("mixed_bfloat16", f"asked for; the CPU has {', '.join(bf16)}")
        if bf16:
            return Precision("mixed_bfloat16", f"asked for; the CPU has {', '.join(bf16)} but not amx_bf16: "
                                               "slower than float32", native=False)
        return Precision("mixed_bfloat16", f"asked for, but the CPU has no bfloat16 instructions ({_wanted(cpu)}); "
                                           "emulated, slower than float32", native=False)
    # auto
    if gpus:
        if len(fast_gpus) == len(gpus):
            return Precision("mixed_float16", f"auto: {_gpu_names(gpus)} have fast float16 (compute capability >= 7.0)")
        return Precision("float32", f"auto: {_gpu_names(gpus)} lack fast float16 (compute capability < 7.0 or unknown)")
    if _fast_bf16(cpu):
        return Precision("mixed_bfloat16", f"auto: training on the CPU, which has {', '.join(bf16)}")
    if bf16:
        return Precision("float32", f"auto: training on the CPU, whose {', '.join(bf16)} without amx_bf16 is slower than float32")
    return Precision("float32", f"auto: training on the CPU, which has no bfloat16 instructions ({_wanted(cpu)})")


def _fast_bf16(cpu: CpuInfo) -> bool:
    """bfloat16 that beats float32 here: any on arm64, AMX's on x86 (module docstring)."""
    return bool(bf16_flags(cpu)) if _is_arm(cpu) else any(f in cpu.flags for f in X86_FAST_BF16)


def _gpu_names(gpus: list[Gpu]) -> str:
    def one(g: Gpu) -> str:
        cc = f" {g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else ""
        return f"{g.name}{cc}"

    return "GPU " + ", ".join(one(g) for g in gpus) if len(gpus) == 1 else "GPUs " + ", ".join(one(g) for g in gpus)


def _wanted(cpu: CpuInfo) -> str:
    return "none of " + ", ".join(ARM_BF16 if _is_arm(cpu) else X86_BF16)


def visible_gpus(tf) -> list[Gpu]:
    """The GPUs TensorFlow sees, with the compute capability each reports."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # details are best-effort (some builds report none)
            details = {}
        cc = details.get("compute_capability")
        found.append(Gpu(details.get("device_name", gpu.name), tuple(cc) if cc else None))
    return found


def resumed_precision(model, chosen: Precision) -> Precision:
    """A checkpoint keeps the dtype policy it was trained in: a resumed run goes on in it."""
    policy = model.dtype_policy.name
    if policy == chosen.policy:
        return chosen
    return Precision(policy, f"the checkpoint's ({chosen.policy} would be chosen now; a resumed run keeps the precision it started in)")
