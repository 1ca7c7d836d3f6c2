"""The planner's defaults live in three places; the graph and the single-process trainer must agree."""
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory

from mdemorl_learner.config import TrainConfig
from mdemorl_planner.dmd_mpc import PlannerConfig


def test_planner_yaml_and_trainer_share_every_default():
    path = Path(get_package_share_directory("stochlite_bringup")) / "config" / "planner.yaml"
    params = yaml.safe_load(path.read_text())["planner"]["ros__parameters"]
    train = TrainConfig()
    shared = {name: value for name, value in params.items() if hasattr(train, name)}
    assert {"elite_fraction", "mirror_alpha", "sigma", "num_samples"} <= set(shared)
    assert shared == {name: getattr(train, name) for name in shared}


def test_planner_config_has_the_trainers_defaults():
    planner, train = PlannerConfig(), TrainConfig()
    assert (planner.elite_fraction, planner.alpha, planner.sigma, planner.gamma, planner.num_samples) == \
        (train.elite_fraction, train.mirror_alpha, train.sigma, train.gamma, train.num_samples)
    assert planner.mppi_temperature == train.mppi_temperature
