"""Where and in which dtype the learning code computes: ``device`` and each compute dtype resolved from the hardware.

``auto`` (the default of every setting) picks CUDA when torch sees a GPU, else the CPU, and bfloat16 only where
a short measured probe shows bfloat16 matmuls clearly faster than float32 on that device. On CPUs with
AVX512-BF16 they are about 2x faster; on AVX2-only CPUs 25-100x slower (a SAC update 10 ms against 253 ms),
so a fixed bfloat16 default would cripple those hosts. The probe takes well under a second and is cached per
host (``$XDG_CACHE_HOME/mdemorl/compute_probe.json``), so the processes of one graph agree and start fast.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")
DTYPE_SETTINGS = ("auto", "float32", "bfloat16")
BF16_MIN_SPEEDUP = 1.25  # auto takes bfloat16 only above this measured matmul speedup: it costs precision
PROBE_SHAPE = (5, 256, 200, 200)  # one bmm of the ensemble's hidden layer: members, rows, in, out
PROBE_SECONDS = 0.08  # timed calls per dtype after one warm-up call (at least 3)
CACHE_VERSION = 1
ISA_LIMIT_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")  # cap the kernels' ISA


@dataclass(frozen=True)
class MatmulProbe:
    """Measured batched-matmul throughput of one device in float32 and bfloat16."""

    float32_gflops: float
    bfloat16_gflops: float

    @property
    def bfloat16_pays(self) -> bool:
        return self.bfloat16_gflops >= BF16_MIN_SPEEDUP * self.float32_gflops


@dataclass(frozen=True)
class ComputeChoice:
    """The resolved device and dtypes of a run, with what they were chosen from (config.yaml's ``resolved:``)."""

    device: str
    sac_dtype: str
    model_dtype: str
    planner_dtype: str
    cpu_capability: str
    float32_gflops: float
    bfloat16_gflops: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def values(self, dtype_key: str) -> dict[str, object]:
        """What one node reports in /diagnostics: the device, its own dtype (``dtype_key``) and the probe."""
        return {"device": self.device, dtype_key: getattr(self, dtype_key), "cpu_capability": self.cpu_capability,
                "float32_gflops": self.float32_gflops, "bfloat16_gflops": self.bfloat16_gflops}

    def describe(self) -> str:
        """One line for logs and the run's summary."""
        return (f"{self.device} ({self.cpu_capability}), SAC {self.sac_dtype}, model {self.model_dtype}, "
                f"planner {self.planner_dtype}; probe float32 {self.float32_gflops:.0f}, bfloat16 "
                f"{self.bfloat16_gflops:.0f} GFLOP/s")


def resolve_device(setting: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU. An explicit ``cuda`` without a usable GPU is an error."""
    if setting not in DEVICES:
        raise ValueError(f"device {setting!r} is not one of {', '.join(DEVICES)}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU (a CPU build of torch, or no "
                         "driver): use device auto or cpu, or install a CUDA build of torch")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gflops(device: torch.device, dtype: torch.dtype) -> float:
    members, rows, fan_in, fan_out = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(members, rows, fan_in, generator=generator).to(device, dtype)
    b = torch.randn(members, fan_in, fan_out, generator=generator).to(device, dtype)
    torch.bmm(a, b)  # warm-up: kernel selection, first-touch allocations
    _synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < PROBE_SECONDS:
        torch.bmm(a, b)
        calls += 1
    _synchronize(device)
    return 2.0 * members * rows * fan_in * fan_out * calls / (time.perf_counter() - start) / 1e9


def measure_matmul(device: torch.device) -> MatmulProbe:
    """float32 and bfloat16 bmm throughput on ``device``, on one CPU thread (the learning nodes' share)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return MatmulProbe(round(_gflops(device, torch.float32), 1), round(_gflops(device, torch.bfloat16), 1))
    finally:
        torch.set_num_threads(threads)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_key(device: torch.device) -> str:
    """What the probe's result depends on: the processor (or GPU), torch's kernels and their ISA limits."""
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    limits = ",".join(f"{k}={v}" for k, v in isa_limits().items())
    return "|".join((device.type, hardware, torch.backends.cpu.get_cpu_capability(), torch.__version__, limits))


def isa_limits() -> dict[str, str]:
    """The environment variables that cap torch's, oneDNN's and MKL's kernels below the CPU's ISA, as set."""
    return {k: os.environ[k] for k in ISA_LIMIT_VARIABLES if k in os.environ}


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mdemorl" / "compute_probe.json"


def cached_probe(device: torch.device) -> MatmulProbe:
    """The probe of this host from the cache, measured (under a file lock, so one process measures) if absent.

    An unreadable or unwritable cache only costs a new measurement."""
    key, path = host_key(device), cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "w")
    except OSError:
        return measure_matmul(device)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries: dict = {}
        with contextlib.suppress(OSError, ValueError):
            entries = json.loads(path.read_text())
            if entries.get("version") != CACHE_VERSION:
                entries = {}
        entry = entries.get("hosts", {}).get(key)
        if entry is not None:
            with contextlib.suppress(TypeError, KeyError):
                return MatmulProbe(float(entry["float32_gflops"]), float(entry["bfloat16_gflops"]))
        probe = measure_matmul(device)
        entries = {"version": CACHE_VERSION, "hosts": {**entries.get("hosts", {}), key: asdict(probe)}}
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries, indent=1))
            tmp.replace(path)
        return probe


def resolve_dtype(setting: str, probe: MatmulProbe, name: str = "compute dtype") -> str:
    """An explicit ``float32``/``bfloat16`` as given; ``auto``: bfloat16 where the probe shows it pays."""
    if setting not in DTYPE_SETTINGS:
        raise ValueError(f"{name} {setting!r} is not one of {', '.join(DTYPE_SETTINGS)}")
    if setting != "auto":
        return setting
    return "bfloat16" if probe.bfloat16_pays else "float32"


def resolve_compute(device: str = "auto", sac_dtype: str = "auto", model_dtype: str = "auto",
                    planner_dtype: str = "auto") -> ComputeChoice:
    """Every compute setting resolved for this host; ValueError names a bad one."""
    for name, value in (("sac_dtype", sac_dtype), ("model_dtype", model_dtype), ("planner_dtype", planner_dtype)):
        if value not in DTYPE_SETTINGS:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(DTYPE_SETTINGS)}")
    where = resolve_device(device)
    probe = cached_probe(where)
    return ComputeChoice(
        device=where.type, sac_dtype=resolve_dtype(sac_dtype, probe), model_dtype=resolve_dtype(model_dtype, probe),
        planner_dtype=resolve_dtype(planner_dtype, probe), cpu_capability=torch.backends.cpu.get_cpu_capability(),
        float32_gflops=probe.float32_gflops, bfloat16_gflops=probe.bfloat16_gflops)

