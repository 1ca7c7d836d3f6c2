"""Single-process trainer CLI.

    python -m mdemorl_learner.train --task leg --algo mdemorl --epochs N --steps-per-epoch S --seed K --out DIR

Writes DIR/progress.csv (one row per epoch, also as TensorBoard scalars in DIR/tensorboard/),
DIR/config.yaml (every setting), DIR/checkpoints/, and
DIR/learning_curve.png (plus DIR/foot_path.png on the leg, DIR/forward_speed.png on stochlite).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path

from tqdm import tqdm

from .config import TrainConfig
from .plotting import plot_foot_path, plot_forward_speed, plot_learning_curve
from .scalars import EpochScalars



class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, non-zero exit
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="python -m mdemorl_learner.train",
                            description="Train SAC, MBPO, MoPAC or M-DeMoRL on the 2R leg, StochLite or a MuJoCo task.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default),
                            default=f.default, help=f.metadata["help"])
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    try:
        cfg.validate()
    except ValueError as exc:
        parser.error(str(exc))
    return cfg


def _fmt(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    from .trainer import EpochStats, Trainer  # loads the simulators: only once the arguments are known good

    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg)
    trainer.cfg.to_yaml(out / "config.yaml", trainer.compute.as_dict())  # the task's real ratio in place of -1
    print(f"compute: {trainer.compute.describe()}", file=sys.stderr)
    progress = out / "progress.csv"
    title = f"{cfg.algo} on {cfg.task} (seed {cfg.seed})"
    total = cfg.epochs * cfg.steps_per_epoch
    with open(progress, "w", newline="") as f, tqdm(total=total, unit="step", dynamic_ncols=True,
                                                     desc=f"{cfg.algo}/{cfg.task}", file=sys.stderr,
                                                     mininterval=0.5 if sys.stderr.isatty() else 30.0) as bar:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in dataclasses.fields(EpochStats)])
        writer.writeheader()
        scalars = EpochScalars(out)
        for _ in range(cfg.epochs):
            stats, trace = trainer.run_epoch(on_step=lambda: bar.update(1))
            writer.writerow(dataclasses.asdict(stats))
            f.flush()
            scalars.write(stats)
            bar.set_postfix(epoch=stats.epoch, eval=_fmt(stats.eval_return), train=_fmt(stats.train_return),
                            mpc=stats.mpc_transitions, refresh=False)
            tqdm.write(f"epoch {stats.epoch:3d}  env_steps {stats.env_steps:7d}  eval_return {_fmt(stats.eval_return):>7}"
                       f"  train_return {_fmt(stats.train_return):>7}  model_val_loss {stats.model_val_loss:.4g}"
                       f"  mpc_transitions {stats.mpc_transitions}  sac_updates {stats.sac_updates}"
                       f"  wall {stats.wall_s:.0f}s", file=sys.stderr)
            trainer.save_checkpoint(out / "checkpoints" / "latest.pt")
            plot_learning_curve(progress, out / "learning_curve.png", title)
            plot_foot_path(trace.foot, trace.foot_desired, trainer.env.unwrapped.dt,
                           out / "foot_path.png", f"{title}, epoch {stats.epoch}")
            plot_forward_speed(trace.forward_speed, trainer.env.unwrapped.dt, out / "forward_speed.png",
                               f"{title}, epoch {stats.epoch}")
    trainer.d_env.save(out / "checkpoints" / "d_env.npz")
    print(f"done: {cfg.epochs} epochs, {trainer.env_steps} env steps, final eval return {_fmt(stats.eval_return)}; "
          f"results in {out}/ (progress.csv, learning_curve.png, checkpoints/latest.pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
