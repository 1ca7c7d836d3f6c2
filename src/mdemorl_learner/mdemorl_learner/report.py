"""``mdemorl report RUN_DIR``: the plots of a run, rebuilt from its MCAP recording alone.

Reads ``RUN_DIR/record.mcap`` (``recorder_node``) and writes into ``RUN_DIR/report/``:
``learning_curve.png`` (from ``/mdemorl/status``: the status that closed each epoch), ``foot_path.png``
(the last evaluation's foot-path markers, leg only), ``joint_states.png`` (positions and efforts over
the recording, at the recorded rate) and, for StochLite, ``shifts_vs_tilt.png`` (the paper's Fig. 4: the
commanded X shift against the torso's pitch and the Y shift against its roll).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mcap_ros2.reader import read_ros2_messages
from stochlite_bringup.node_table import RECORD_FILE

from .plotting import plot_foot_path, plot_learning_columns, plt

REPORT_DIR = "report"
USAGE = ("usage: mdemorl report RUN_DIR\n\nRebuilds the plots of an `mdemorl train` run from RUN_DIR/record.mcap "
         f"alone, into RUN_DIR/{REPORT_DIR}/:\nlearning_curve.png, foot_path.png (leg), joint_states.png and "
         "shifts_vs_tilt.png (StochLite).")

LEG_CONTROL_DT_S = 0.002  # one foot-path marker point per 500 Hz control step


def read_recording(path: Path) -> dict[str, list]:
    """Decoded messages per topic, in log-time order: (log time [s], message)."""
    topics: dict[str, list] = {}
    for item in read_ros2_messages(str(path)):
        topics.setdefault(item.channel.topic, []).append((item.log_time_ns / 1e9, item.ros_msg))
    return topics


def epoch_columns(statuses: list) -> dict[str, np.ndarray]:
    """One row per epoch: the first status that reports it closed."""
    rows, seen = [], set()
    for _, status in statuses:
        if status.epoch > 0 and status.epoch not in seen:
            seen.add(status.epoch)
            rows.append((status.env_steps, status.eval_return, status.train_return, status.model_val_loss))
    columns = np.array(rows, dtype=float).reshape(-1, 4).T
    return dict(zip(("env_steps", "eval_return", "train_return", "model_val_loss"), columns))


def plot_joint_states(states: list, out_png: Path, title: str) -> None:
    """Joint positions and efforts against recording time."""
    t = np.array([stamp for stamp, _ in states]) - states[0][0]
    names = list(states[-1][1].name)
    width = len(names)
    position = np.array([m.position for _, m in states if len(m.position) == width])
    effort = np.array([m.effort for _, m in states if len(m.effort) == width])
    fig, ax = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for j, name in enumerate(names):
        ax[0].plot(t[:len(position)], position[:, j], lw=0.8, label=name)
        if len(effort):
            ax[1].plot(t[:len(effort)], effort[:, j], lw=0.8, label=name)
    ax[0].set(ylabel="position [rad or m]", title=title)
    ax[1].set(xlabel="recording time [s]", ylabel="effort")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def shifts_against_tilt(gait: list, rpy: list) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 2]`` mean X and Y shift over the legs [m] and ``[n, 2]`` pitch and roll [rad] of the torso,
    each command paired with the torso orientation logged nearest to it."""
    rpy_t = np.array([t for t, _ in rpy])
    tilt = np.array([(m.vector.y, m.vector.x) for _, m in rpy])
    gait_t = np.array([t for t, _ in gait])
    shifts = np.array([np.asarray(m.data[:12]).reshape(4, 3)[:, :2].mean(0) for _, m in gait])
    after = np.clip(np.searchsorted(rpy_t, gait_t), 1, len(rpy_t) - 1)
    nearest = np.where(np.abs(rpy_t[after] - gait_t) < np.abs(rpy_t[after - 1] - gait_t), after, after - 1)
    return shifts, tilt[nearest]


def plot_shifts_against_tilt(shifts: np.ndarray, tilt: np.ndarray, out_png: Path, title: str) -> None:
    """Scatter of X shift vs pitch and Y shift vs roll, with least-squares lines (mm per degree)."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for a, (shift, angle, name) in zip(ax, ((shifts[:, 0], tilt[:, 0], "pitch"), (shifts[:, 1], tilt[:, 1], "roll"))):
        degrees, mm = np.degrees(angle), 1e3 * shift
        a.scatter(degrees, mm, s=3, alpha=0.3)
        if np.ptp(degrees) > 0:
            slope, offset = np.polyfit(degrees, mm, 1)
            grid = np.linspace(degrees.min(), degrees.max(), 2)
            a.plot(grid, slope * grid + offset, color="tab:red", label=f"{slope:+.2f} mm/deg")
            a.legend()
        axis = "X" if name == "pitch" else "Y"
        a.set(xlabel=f"torso {name} [deg]", ylabel=f"mean {axis} shift of the feet [mm]", title=f"{axis} shift vs {name}")
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def report(run_dir: Path) -> list[Path]:
    """Write the report's PNGs; returns their paths. ValueError if there is no recording."""
    record = run_dir / RECORD_FILE
    if not record.is_file():
        raise ValueError(f"{record} does not exist: RUN_DIR must be the run_dir of an `mdemorl train` run")
    topics = read_recording(record)
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    written = []
    if "/mdemorl/status" in topics:
        plot_learning_columns(epoch_columns(topics["/mdemorl/status"]), out / "learning_curve.png",
                              f"{run_dir.name}: from {RECORD_FILE}")
        written.append(out / "learning_curve.png")
    foot = [topic for topic in topics if topic.endswith("/foot_path")]
    if foot and f"{foot[0]}_desired" in topics:
        actual, desired = (np.array([[p.x, p.z] for p in topics[name][-1][1].points])
                           for name in (foot[0], f"{foot[0]}_desired"))
        plot_foot_path(actual, desired, LEG_CONTROL_DT_S, out / "foot_path.png", "last evaluation")
        written.append(out / "foot_path.png")
    states = next((topics[name] for name in topics if name.endswith("/joint_states")), None)
    if states:
        plot_joint_states(states, out / "joint_states.png", f"{run_dir.name}: joint states as recorded")
        written.append(out / "joint_states.png")
    gait = next((topics[name] for name in topics if name.endswith("/gait_command")), None)
    rpy = next((topics[name] for name in topics if name.endswith("/torso_rpy")), None)
    if gait and rpy:
        shifts, tilt = shifts_against_tilt(gait, rpy)
        plot_shifts_against_tilt(shifts, tilt, out / "shifts_vs_tilt.png",
                                 f"{run_dir.name}: {len(gait)} commands, as recorded")
        written.append(out / "shifts_vs_tilt.png")
    return [path for path in written if path.is_file()]


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 1:
        print(USAGE.splitlines()[0], file=sys.stderr)
        return 2
    try:
        written = report(Path(argv[0]))
    except ValueError as error:
        print(f"mdemorl: error: {error}", file=sys.stderr)
        return 2
    print("mdemorl: wrote " + ", ".join(str(p) for p in written))
    return 0
