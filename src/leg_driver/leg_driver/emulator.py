"""The leg's microcontroller, emulated on a pseudo-terminal with the leg simulated in PyBullet in real time.

Behaves as the firmware described in ``docs/serial_protocol.md``: a free-running 500 Hz tick applies
the latest TORQUE (zero when disarmed, before a HELLO, or when the host has been silent longer than
the watchdog), steps the simulation 2 ms and sends one STATE frame. Faults, the pty and the record
of received frames: :mod:`~leg_driver.emulated_mcu`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .emulated_mcu import EmulatedMcu, FaultPlan, McuSession
from .protocol_frames import JOINTS, Heartbeat, Robot, State, Status, Torque


class EmulatedLegMcu(EmulatedMcu):
    """The leg's firmware loop; :meth:`run` until ``should_stop()`` is true."""

    ROBOT = Robot.LEG
    JOINTS = JOINTS
    COMMAND = Torque

    def __init__(self, link: Path, plan: FaultPlan, rate_hz: int = 500, watchdog_ms: float = 20.0,
                 max_torque: float = 32.0, seed: int = 0, record: Path | None = None) -> None:
        from stochlite_bringup.sim_bridge_node import start_joint_angles
        from stochlite_bringup.tasks.leg_simulation import LegSimulation

        self.sim = LegSimulation(timestep_s=1.0 / rate_hz, torque_limit_nm=max_torque)
        self.sim.reset(start_joint_angles())
        self._max_torque = max_torque
        super().__init__(link, plan, rate_hz, watchdog_ms, seed, record, "tau_hip,tau_knee")

    def _renewed_session(self, now_ns: int, open: bool = False, ack_seq: int = 0) -> McuSession:
        """A new session starts disarmed, with zero torque."""
        return McuSession(open=open, last_command_ns=now_ns, ack_seq=ack_seq)

    def _take_command(self, message: Torque | Heartbeat) -> tuple[float, float]:
        self._session.torque = message.torque if isinstance(message, Torque) else (0.0, 0.0)
        return self._session.torque

    def _forget_commands(self) -> None:
        self._session.torque = (0.0, 0.0)

    def _step(self, now_ns: int) -> np.ndarray:
        torque = self._applied_torque(now_ns)
        self.sim.step(torque)
        return torque

    def _applied_torque(self, now_ns: int) -> np.ndarray:
        s = self._session
        if self._host_silent(now_ns) or not (s.open and s.armed):
            return np.zeros(JOINTS)
        return np.clip(np.asarray(s.torque, dtype=np.float64), -self._max_torque, self._max_torque)

    def _state_message(self, now_ns: int, torque: np.ndarray) -> State:
        s = self._session
        q, qdot = self.sim.joint_state()
        status = self._status(now_ns)
        if np.any(np.abs(s.torque) > self._max_torque):
            status |= Status.TORQUE_LIMITED
        return State((now_ns // 1000) % (1 << 32), s.ack_seq, status, tuple(q), tuple(qdot), tuple(torque))

    def _overheated(self, state: State) -> State:
        return dataclasses.replace(state, status=state.status | Status.OVER_TEMPERATURE)
