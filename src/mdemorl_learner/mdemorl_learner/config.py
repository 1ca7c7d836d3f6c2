"""Every setting of a training run, with its default and meaning, in one typed dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mdemorl_planner.compute import ComputeChoice

ALGORITHMS = ("sac", "mbpo", "mopac", "mdemorl")
RESOLVED_KEY = "resolved"
RESOLVED_HELP = ("resolved: the device and dtypes this host computed in, the CPU's kernel capability and the "
                 "matmul probe they were chosen from (GFLOP/s)")


def _setting(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """One training run. Field metadata holds the description shown by --help and in config.yaml."""

    task: str = _setting("leg", "task: leg, stochlite or a gymnasium MuJoCo id (HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5)")
    algo: str = _setting("mdemorl", "algorithm: " + " | ".join(ALGORITHMS))
    epochs: int = _setting(20, "training epochs")
    steps_per_epoch: int = _setting(1000, "real environment steps per epoch")
    seed: int = _setting(0, "random seed for torch, numpy and the environment")
    out: str = _setting("runs/latest", "run directory for progress.csv, config.yaml, checkpoints and plots")
    episode_steps: int = _setting(0, "episode length; 0 keeps the task's default (1000)")
    eval_episodes: int = _setting(1, "deterministic evaluation episodes after each epoch")
    torch_threads: int = _setting(0, "torch intra-op threads; 0 uses all cores")
    device: str = _setting("auto", "where the learning code computes: auto (CUDA when torch sees a GPU, else the CPU), "
                           "cpu or cuda")

    # SAC (outer loop)
    start_steps: int = _setting(1000, "uniform random actions for the first N env steps")
    updates_per_step: float = _setting(1.0, "SAC gradient steps per env step (fractions accumulate)")
    batch_size: int = _setting(256, "SAC minibatch size")
    hidden_size: int = _setting(256, "SAC hidden layer width")
    num_layers: int = _setting(2, "SAC hidden layers")
    gamma: float = _setting(0.99, "discount factor (SAC and the planner's eq. 3)")
    tau: float = _setting(0.005, "Polyak averaging rate of the target critics")
    lr: float = _setting(3e-4, "learning rate of actor, critics and temperature")
    init_alpha: float = _setting(0.0, "starting entropy temperature alpha of SAC's automatic tuning; "
                                 "0 keeps the task's (1.0; stochlite 0.05)")
    sac_dtype: str = _setting("auto", "dtype of the SAC updates' hidden-layer matmuls: auto (bfloat16 where a "
                              "measured probe shows it faster, e.g. AVX512-BF16 CPUs, else float32), bfloat16 "
                              "(weights cast once per update; Q values and losses stay float32) or float32")
    replay_size: int = _setting(1_000_000, "capacity of D_ENV")

    # Model (ensemble)
    ensemble_size: int = _setting(7, "probabilistic networks in the ensemble (K)")
    num_elites: int = _setting(5, "members used for prediction, chosen by validation loss")
    model_hidden: int = _setting(200, "ensemble hidden width")
    model_layers: int = _setting(4, "ensemble hidden layers")
    model_lr: float = _setting(1e-3, "ensemble learning rate")
    model_train_freq: int = _setting(1000, "env steps between model training + imagination (1000 = once per epoch, Algorithm 1)")
    model_max_epochs: int = _setting(25, "cap on ensemble training epochs per call (early stopping usually ends sooner)")
    model_holdout: float = _setting(0.2, "fraction of D_ENV held out for validation")
    model_dtype: str = _setting("auto", "dtype of the ensemble's training forward passes: auto (as --sac-dtype), "
                                "bfloat16 (autocast, same held-out loss; validation stays float32) or float32")

    # Imagination: shared by mbpo, mopac and mdemorl
    real_ratio: float = _setting(-1.0, "fraction of each SAC batch drawn from D_ENV, the rest from D_MPC / model "
                                 "data; -1 keeps the task's (0.9 on the leg, 0.5 elsewhere)")
    model_retain_epochs: int = _setting(2, "epochs of imagined data kept in D_MPC")
    rollout_batch_start: int = _setting(100, "start states per imagination round at epoch 1")
    rollout_batch_max: int = _setting(1000, "start states per imagination round at the end of the schedule (paper: up to 10,000)")
    horizon_start: int = _setting(5, "planning horizon H at the start of the schedule (paper: 5)")
    horizon_end: int = _setting(15, "planning horizon H at the end of the schedule (paper: 15)")
    schedule_start_epoch: int = _setting(1, "epoch where the H and batch schedules start growing")
    schedule_end_epoch: int = _setting(20, "epoch where H and the batch reach their final values")
    num_samples: int = _setting(100, "sampled control sequences per start state (M)")
    elite_fraction: float = _setting(0.01, "CEM elite fraction p (eq. 13); the paper's is 0.1, 0.01 learned "
                                     "fastest here (bench/README.md)")
    mirror_alpha: float = _setting(1.0, "mirror-descent step size alpha (eq. 9); not given in the paper, 1.0 "
                                   "learned fastest here with p = 0.01")
    sigma: float = _setting(0.3, "std of the control distribution around the policy mean (eq. 11)")
    mppi_temperature: float = _setting(1.0, "MPPI temperature lambda (mopac)")
    mbpo_rollout_length: int = _setting(1, "MBPO branched rollout length k")
    imagined_reward: str = _setting("auto", "reward of imagined transitions (mbpo, mopac, mdemorl): model (the "
                                    "ensemble's reward head, as in the paper), task (the task's reward of the "
                                    "predicted next state; the leg, whose observation determines it) or auto "
                                    "(task where possible, else model)")
    planner_dtype: str = _setting("auto", "dtype of the planner's matmuls (mopac, mdemorl): auto (as --sac-dtype), "
                                  "bfloat16 (states and costs stay float32) or float32")

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting and how to fix it."""
        from mdemorl_planner.compute import DEVICES, DTYPE_SETTINGS
        from mdemorl_planner.task_reward_model import uses_task_reward
        from stochlite_bringup.task_names import OBSERVED_REWARD_TASKS, TASK_NAMES

        if self.algo not in ALGORITHMS:
            raise ValueError(f"--algo {self.algo!r} is not one of {', '.join(ALGORITHMS)}")
        for name in ("sac_dtype", "model_dtype", "planner_dtype"):
            if getattr(self, name) not in DTYPE_SETTINGS:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)!r} is not one of "
                                 f"{', '.join(DTYPE_SETTINGS)}")
        if self.device not in DEVICES:
            raise ValueError(f"--device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.task not in TASK_NAMES:
            raise ValueError(f"--task {self.task!r} is not one of {', '.join(TASK_NAMES)}")
        try:
            uses_task_reward(self.imagined_reward, self.task in OBSERVED_REWARD_TASKS, self.task)
        except ValueError as err:
            raise ValueError(f"--imagined-reward {err}") from err
        positive = ("epochs", "steps_per_epoch", "batch_size", "hidden_size", "num_layers", "ensemble_size",
                    "num_elites", "model_hidden", "model_layers", "model_train_freq", "model_max_epochs",
                    "rollout_batch_start", "rollout_batch_max", "horizon_start", "horizon_end", "num_samples",
                    "mbpo_rollout_length", "model_retain_epochs", "eval_episodes", "replay_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("seed", "episode_steps", "start_steps", "torch_threads", "init_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not (self.real_ratio == -1.0 or 0.0 <= self.real_ratio <= 1.0):
            raise ValueError(f"--real-ratio must lie in [0, 1], or be -1 for the task's, got {self.real_ratio}")
        unit = ("elite_fraction", "mirror_alpha", "model_holdout")
        for name in unit:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0 or (name in ("elite_fraction", "model_holdout") and v == 0.0):
                raise ValueError(f"--{name.replace('_', '-')} must lie in (0, 1] (or [0, 1]), got {v}")
        if self.num_elites > self.ensemble_size:
            raise ValueError(f"--num-elites {self.num_elites} exceeds --ensemble-size {self.ensemble_size}")
        for name in ("gamma", "tau"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must lie in (0, 1], got {getattr(self, name)}")
        for name in ("lr", "model_lr", "sigma", "mppi_temperature", "updates_per_step"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

    def with_task_defaults(self) -> "TrainConfig":
        """A copy with the task's real ratio in place of -1."""
        from stochlite_bringup.tasks import task_real_ratio

        return dataclasses.replace(self, real_ratio=task_real_ratio(self.task, self.real_ratio))

    def resolved(self, compute: "ComputeChoice") -> "TrainConfig":
        """A copy with the device and dtypes that ``compute`` resolved in place of ``auto``."""
        return dataclasses.replace(self, device=compute.device, sac_dtype=compute.sac_dtype,
                                   model_dtype=compute.model_dtype, planner_dtype=compute.planner_dtype)

    def to_yaml(self, path: Path, resolved: dict[str, object] | None = None) -> None:
        """Write every setting with its description as a comment, then what ``auto`` resolved to."""
        lines = ["# mdemorl training run: every setting used"]
        for f in dataclasses.fields(self):
            lines.append(f"# {f.metadata['help']}")
            lines.append(yaml.safe_dump({f.name: getattr(self, f.name)}, default_flow_style=False).strip())
        if resolved is not None:
            lines.append(f"# {RESOLVED_HELP}")
            lines.append(yaml.safe_dump({RESOLVED_KEY: resolved}, default_flow_style=False, sort_keys=False).strip())
        Path(path).write_text("\n".join(lines) + "\n")

    @classmethod
    def from_yaml(cls, path: Path) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        data.pop(RESOLVED_KEY, None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; valid ones are listed in config.yaml of any run")
        return cls(**data)
