"""Device and compute dtypes resolved from the hardware: the rule, the per-host probe cache, the errors."""
import json
import os
import subprocess
import sys

import pytest
import torch

from mdemorl_planner.compute import (BF16_MIN_SPEEDUP, ISA_LIMIT_VARIABLES, MatmulProbe, cache_path, cached_probe,
                                     host_key, resolve_compute, resolve_device, resolve_dtype)

CPU = torch.device("cpu")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_auto_takes_bfloat16_only_where_the_probe_shows_it_clearly_faster():
    avx512_bf16 = MatmulProbe(float32_gflops=90.0, bfloat16_gflops=200.0)  # as measured on AVX512-BF16 hosts
    avx2 = MatmulProbe(float32_gflops=53.5, bfloat16_gflops=1.9)  # an AVX2-only host
    marginal = MatmulProbe(float32_gflops=100.0, bfloat16_gflops=100.0 * BF16_MIN_SPEEDUP * 0.99)
    assert resolve_dtype("auto", avx512_bf16) == "bfloat16"
    assert resolve_dtype("auto", avx2) == "float32"
    assert resolve_dtype("auto", marginal) == "float32"  # not worth bfloat16's precision
    assert resolve_dtype("bfloat16", avx2) == "bfloat16" and resolve_dtype("float32", avx512_bf16) == "float32"
    with pytest.raises(ValueError, match="planner_dtype 'float16' is not one of auto, float32, bfloat16"):
        resolve_dtype("float16", avx2, "planner_dtype")


def test_devices_resolve_and_a_missing_gpu_is_a_clear_error():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device 'tpu' is not one of auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU.*use device auto or cpu"):
            resolve_device("cuda")


def test_the_probe_is_measured_once_per_host_and_then_read_from_the_cache(cache_dir):
    probe = cached_probe(CPU)
    assert probe.float32_gflops > 0 and probe.bfloat16_gflops > 0
    stored = json.loads(cache_path().read_text())
    assert cache_path().parent == cache_dir / "mdemorl"
    assert stored["hosts"][host_key(CPU)] == {"float32_gflops": probe.float32_gflops,
                                              "bfloat16_gflops": probe.bfloat16_gflops}
    stored["hosts"][host_key(CPU)] = {"float32_gflops": 1.0, "bfloat16_gflops": 1000.0}
    cache_path().write_text(json.dumps(stored))
    assert cached_probe(CPU) == MatmulProbe(1.0, 1000.0)  # read, not measured again
    choice = resolve_compute("cpu", sac_dtype="auto", model_dtype="float32")
    assert (choice.device, choice.sac_dtype, choice.model_dtype, choice.planner_dtype) == \
        ("cpu", "bfloat16", "float32", "bfloat16")
    assert choice.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert (choice.float32_gflops, choice.bfloat16_gflops) == (1.0, 1000.0)
    assert choice.values("model_dtype") == {"device": "cpu", "model_dtype": "float32",
                                            "cpu_capability": choice.cpu_capability,
                                            "float32_gflops": 1.0, "bfloat16_gflops": 1000.0}


def test_a_corrupt_cache_is_measured_again_and_rewritten(cache_dir):
    cache_path().parent.mkdir(parents=True)
    cache_path().write_text("{not json")
    probe = cached_probe(CPU)
    assert json.loads(cache_path().read_text())["hosts"][host_key(CPU)]["float32_gflops"] == probe.float32_gflops


def test_the_cache_key_tells_kernel_limits_apart(monkeypatch):
    for name in ISA_LIMIT_VARIABLES:  # as on a host whose kernels nothing caps
        monkeypatch.delenv(name, raising=False)
    plain = host_key(CPU)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert host_key(CPU) != plain and "ONEDNN_MAX_CPU_ISA=AVX2" in host_key(CPU)


@pytest.mark.integration
def test_an_avx2_host_computes_in_float32(cache_dir):
    """torch's and oneDNN's kernels limited to AVX2 (as on CPUs without AVX512-BF16), measured for real."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    code = ("from mdemorl_planner.compute import resolve_compute; import json; "
            "print(json.dumps(resolve_compute().as_dict()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    choice = json.loads(out.stdout)
    assert choice["cpu_capability"] == "AVX2"
    assert choice["bfloat16_gflops"] < choice["float32_gflops"]  # 25-100x slower without native bfloat16
    assert choice["sac_dtype"] == choice["model_dtype"] == choice["planner_dtype"] == "float32"

