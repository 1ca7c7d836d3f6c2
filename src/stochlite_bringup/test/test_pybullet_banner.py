"""No process of the graph prints PyBullet's build-time banner, which its C extension writes on first import."""
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from stochlite_bringup.node_table import resolve_arguments, training_nodes

BANNER = "pybullet build time"
PYBULLET_USERS = ("stochlite_bringup.tasks.leg_simulation", "stochlite_bringup.tasks.stochlite_simulation",
                  "stochlite_bringup.tasks.stochlite_env")
EVERY_NODE_ARGUMENTS = ({"foxglove": "true"}, {"sim": "none", "port": "/dev/null"},
                        {"robot": "stochlite", "sim": "none", "port": "/dev/null"})


def fresh_import(module: str) -> subprocess.CompletedProcess:
    """Import ``module`` in a new interpreter, then write one line to each of stdout and stderr."""
    code = f"import sys\nimport {module}\nprint('stdout after')\nprint('stderr after', file=sys.stderr)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", PYBULLET_USERS)
def test_modules_that_use_pybullet_import_it_without_the_banner(module):
    proc = fresh_import(module)
    assert proc.returncode == 0, proc.stderr
    assert BANNER not in proc.stdout + proc.stderr
    assert proc.stdout == "stdout after\n" and proc.stderr == "stderr after\n"  # both streams restored


def node_modules() -> dict[str, str]:
    """The module of every node executable the graph can start, by executable."""
    executables = {spec.executable for args in EVERY_NODE_ARGUMENTS for spec in training_nodes(resolve_arguments(args))}
    scripts = {e.name: e.module for e in entry_points(group="console_scripts")}
    return {executable: scripts[executable] for executable in sorted(executables)}


@pytest.mark.integration
def test_no_node_prints_the_banner_when_it_starts():
    modules = node_modules()
    assert {"sim_bridge_node", "agent_node", "learner_node", "hw_interface_node", "stochlite_estimator_node"} <= set(
        modules)
    for executable, module in modules.items():
        proc = fresh_import(module)
        assert proc.returncode == 0 and BANNER not in proc.stdout + proc.stderr, (executable, proc.stderr[-2000:])
