"""Whether a driver's loop drives the robot, and why not: what ``<robot>/enable`` waits for and answers.

ROS-free: the leg's loop process reports it for its loop too (:mod:`~leg_driver.loop_process`).
"""
from __future__ import annotations

from .protocol_frames import ServoFlags, Status


def over_temperature(state) -> bool:
    """Whether ``state`` (None: no valid state yet) reports over-temperature, in its status or for a servo."""
    if state is None:
        return False
    servos = getattr(state, "servo_flags", ())
    return bool(state.status & Status.OVER_TEMPERATURE) or any(f & ServoFlags.OVER_TEMPERATURE for f in servos)


def arming_report(loop) -> dict[str, object]:
    """The loop's arming (its own: it disarms itself on over-temperature), the MCU's, the link's fault ('' if
    healthy) and whether the newest valid state reports over-temperature."""
    return {"armed": loop.armed, "mcu_armed": loop.mcu_armed, "fault": loop.fault,
            "over_temperature": over_temperature(loop.latest_state)}


def arming_problem(report: dict[str, object]) -> str:
    """Why a loop asked to arm does not drive the robot, with the fix ('' if it does)."""
    if report.get("over_temperature"):
        return ("the MCU reports over-temperature and the driver disarmed (a hot motor is not driven): let the "
                "motors cool down, then enable again")
    if report.get("fault"):
        return (f"link fault: {report['fault']} (the driver arms only over a healthy link: see its log and "
                "/diagnostics, then enable again)")
    if not report.get("armed"):
        return ("the driver disarmed while arming (the MCU reported over-temperature, or enable false came "
                "meanwhile): enable again")
    if not report.get("mcu_armed"):
        return ("the MCU does not report ARMED after ENABLE: check its emergency stop and motor power, then enable "
                "again")
    return ""
