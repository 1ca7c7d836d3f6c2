"""glibc keeps a SAC update's freed memory after ``keep_freed_memory``, instead of page-faulting on it again."""
import subprocess
import sys

import pytest

# One process per measurement: the malloc settings are process-wide.
FAULTS_PER_UPDATE = """
import resource, sys
import numpy as np, torch
from mdemorl_learner.sac import SAC, SACConfig
from mdemorl_planner.cpu_setup import keep_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_memory(), "glibc refused the malloc settings"
rng = np.random.default_rng(0)
n, obs_dim, act_dim = 256, 17, 6
batch = {"obs": rng.normal(size=(n, obs_dim)), "act": rng.uniform(-1, 1, (n, act_dim)), "reward": rng.normal(size=n),
         "next_obs": rng.normal(size=(n, obs_dim)), "terminated": np.zeros(n)}
agent = SAC(obs_dim, act_dim, SACConfig(compute_dtype="bfloat16"))
for _ in range(30):
    agent.update(batch)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    agent.update(batch)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults_per_update(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_UPDATE, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_sac_updates_stop_page_faulting_once_freed_memory_is_kept():
    default, kept = faults_per_update("default"), faults_per_update("keep")
    assert kept < default / 10, f"{kept} page faults per update with the freed memory kept, {default} without"
