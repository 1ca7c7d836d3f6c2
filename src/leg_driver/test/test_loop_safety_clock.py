"""The drivers' safety rules about time, cycle by cycle on a stepped clock: the ROS-free loops (ControlLoop, the
leg's; PositionLoop, StochLite's) against the emulated MCUs on a real pty, with the shipped parameters. The test
moves the clock: each cycle is one loop step at its next deadline, then one MCU tick at the same instant; a command
arrives 1 ms into a period. The frames the MCU recorded show what the loop sent in each cycle."""
import numpy as np
import pytest
from stochlite_bringup.node_parameters import config_defaults

from leg_driver.emulated_mcu import FaultPlan
from leg_driver.mcu_loop import PHASE_STEP_NS
from leg_driver.protocol_frames import Status

LEG = config_defaults("hw_interface.yaml", "hw_interface")
STOCHLITE = config_defaults("stochlite_hw_interface.yaml", "stochlite_hw_interface")
TORQUE = (1.0, -0.5)  # N*m: inside every clamp, so the MCU receives it unchanged


def test_leg_settings_are_what_the_rules_below_count_in():
    assert LEG["loop_rate_hz"] == 500 and LEG["command_timeout_s"] == 0.02  # 10 cycles of 2 ms
    assert LEG["state_timeout_cycles"] == 2 and LEG["max_ack_lag_cycles"] == 4
    assert STOCHLITE["loop_rate_hz"] == 100 and STOCHLITE["command_timeout_s"] == 0.05  # 5 cycles of 10 ms


def test_leg_watchdog_zeroes_torque_in_the_first_cycle_more_than_20_ms_after_the_last_command(leg_rig):
    rig = leg_rig
    rig.start_armed()
    first = rig.cycle(TORQUE) + 1
    for _ in range(10):
        rig.cycle(TORQUE)
    cycles = [rig.cycle() for _ in range(15)]  # the last command's age in these cycles: 1, 3, ..., 29 ms
    assert rig.received(first) == TORQUE  # applied from the first cycle after it arrived
    assert [rig.received(c) for c in cycles] == [TORQUE] * 10 + [(0.0, 0.0)] * 5  # zero from 21 ms on
    assert rig.loop.watchdog_trips == 1 and rig.loop.link_faults == 0 and not rig.loop.fault
    assert rig.samples[-1].state.torque == (0.0, 0.0)  # what the MCU applied


def test_leg_stale_states_are_a_link_fault_in_the_third_cycle_without_one_and_only_a_later_command_resumes(leg_rig):
    rig = leg_rig
    rig.start_armed()
    for _ in range(3):
        rig.cycle(TORQUE)
    stalled = [rig.cycle(TORQUE, mcu_ticks=False) for _ in range(6)]  # the first reads the MCU's last state
    assert rig.loop.fault == "no state from the MCU for more than 2 cycles" and rig.loop.link_faults == 1
    back = rig.cycle(TORQUE)  # the MCU reads the queued frames and answers; the loop sees it in the next cycle
    healing = [rig.cycle(TORQUE) for _ in range(LEG["recovery_cycles"])]
    assert not rig.loop.fault  # after 10 healthy cycles in a row, not before
    resumed = rig.cycle(TORQUE)
    # 1 and 2 cycles without a new state are fine; the 3rd is a fault: zero torque
    assert [rig.received(c) for c in stalled] == [TORQUE] * 3 + [(0.0, 0.0)] * 3
    # zero while it heals; a command from before the fault ended does not count, the one that arrived after it does
    assert {rig.received(c) for c in [back, *healing]} == {(0.0, 0.0)} and rig.received(resumed) == TORQUE
    assert rig.loop.watchdog_trips == 0 and rig.loop.last_fault == "no state from the MCU for more than 2 cycles"


@pytest.mark.parametrize("leg_rig", [{"settings": {"state_timeout_cycles": 10},  # only the acknowledgements are late
                                      "plan": FaultPlan(("delay",), every_s=10.0, for_s=0.05, first_s=0.1,
                                                        delay_ms=12.0)}], indirect=True)
def test_leg_late_acknowledgements_are_a_link_fault_from_the_first_late_state_until_they_catch_up(leg_rig):
    rig = leg_rig
    rig.start_armed()
    rig.cycle(TORQUE)
    faults = {}
    for _ in range(80):  # to 180 ms; the MCU delays its states at 100-150 ms
        cycle = rig.cycle(TORQUE)
        faults[cycle] = rig.loop.fault
    burst = next(int(line.split(",")[0]) for line in rig.mcu.recorder.lines if ",fault_start," in line)
    start = burst // 2_000_000  # the MCU's first delayed state is sent 12 ms (6 ticks) late, so its ack is 6 late
    late = [c for c, fault in faults.items() if fault.startswith("the MCU")]
    healing = [c for c, fault in faults.items() if fault.startswith("recovering")]
    assert late[0] == start + 7
    assert {faults[c] for c in late} == {"the MCU acknowledges commands 6 frames late"}
    assert all(rig.received(c) == TORQUE for c in faults if c < late[0])  # no state for 6 cycles: within 10
    assert late == list(range(late[0], late[-1] + 1)) and rig.loop.link_faults == 1
    assert healing == list(range(late[-1] + 1, late[-1] + LEG["recovery_cycles"]))  # the 10th healthy one clears it
    assert all(rig.received(c) == (0.0, 0.0) for c in late + healing + [healing[-1] + 1])
    assert rig.received(healing[-1] + 2) == TORQUE  # a command that arrived after the fault ended


def test_a_stalled_host_skips_its_missed_cycles_and_both_watchdogs_zero_the_torque(leg_rig):
    rig = leg_rig
    rig.start_armed()
    for _ in range(5):
        rig.cycle(TORQUE)
    before = rig.loop.clock.cycle
    for _ in range(15):  # the host sleeps 30 ms; the MCU ticks on without commands
        rig.clock.advance(2_000_000)
        rig.tick()
    woken = rig.cycle()
    assert woken == before + 15 and rig.loop.clock.missed == 14  # one late cycle, no burst of catch-up cycles
    assert rig.received(woken) == (0.0, 0.0) and rig.loop.watchdog_trips == 1  # its command is 30 ms old
    state = rig.samples[-1].state  # the MCU's newest state: its own watchdog (20 ms) zeroed the torque
    assert state.status & Status.WATCHDOG and state.torque == (0.0, 0.0)
    assert rig.loop.link.mcu_errors == {"WATCHDOG": 1} and rig.loop.link_faults == 0
    assert rig.loop.mcu_flags == {"WATCHDOG": 1, "OVER_TEMPERATURE": 0}


def test_stochlite_holds_the_measured_pose_from_the_first_cycle_more_than_50_ms_after_the_last_command(stochlite_rig):
    rig = stochlite_rig
    rig.start_armed()  # armed, no command yet: it holds where it lies
    loop, limits = rig.loop, rig.loop.limits
    target = np.clip(np.asarray(rig.samples[-1].state.position) + 0.05, limits.joint_min, limits.joint_max)
    for _ in range(5):
        last = rig.cycle(target)
    np.testing.assert_allclose(rig.received(last), target, atol=1e-6)  # float32 frames
    assert not loop.holding
    following = []
    for _ in range(12):
        cycle = rig.cycle()
        following.append((loop.holding, rig.samples[-1].state.position, np.array(rig.received(cycle))))
    # the last command's age in these cycles: 9, 19, ..., 119 ms; it holds from 59 ms on
    assert [held for held, *_ in following] == [False] * 5 + [True] * 7 and loop.watchdog_trips == 1
    np.testing.assert_allclose([sent for *_, sent in following[:5]], [target] * 5, atol=1e-6)
    # the hold is the pose measured in the first holding cycle, approached at most max_step per cycle, then kept
    hold = np.clip(np.asarray(following[5][1]), limits.joint_min, limits.joint_max)
    previous = target
    for *_, sent in following[5:]:
        previous = limits.limit(hold, previous)
        np.testing.assert_allclose(sent, previous, atol=1e-6)
    np.testing.assert_allclose(previous, hold, atol=1e-6)


@pytest.mark.parametrize("leg_rig", [{"settings": {"state_wait_us": LEG["state_wait_us"]}}], indirect=True)
def test_leg_a_cycle_locks_its_phase_just_before_the_mcus_state_and_waits_for_a_late_one(leg_rig):
    """The rig's MCU ticks at each loop deadline, so its state is always waiting at the next one: each such cycle
    moves the deadlines earlier. A cycle without a state reads on for state_wait_us, then answers."""
    rig = leg_rig
    rig.start_armed()
    rig.cycle(TORQUE)
    before = rig.loop.clock.deadline_ns
    on_time = rig.cycle(TORQUE)  # its state was waiting: the deadlines move PHASE_STEP_NS earlier
    assert rig.loop.clock.deadline_ns == before + rig.loop.clock.period_ns - PHASE_STEP_NS
    assert rig.clock() == rig.loop.clock.deadline_ns + PHASE_STEP_NS + rig.command_delay_ns  # no wait
    rig.cycle(TORQUE, mcu_ticks=False)  # the MCU skips a tick: the next cycle has no state
    deadline = rig.loop.clock.deadline_ns + rig.loop.clock.period_ns
    late = rig.cycle(TORQUE)  # it reads on for 1 ms, then sends; no state came, so the phase stays
    waited_ns = rig.clock() - rig.command_delay_ns - deadline
    assert rig.loop.clock.deadline_ns == deadline
    assert LEG["state_wait_us"] * 1000 <= waited_ns < LEG["state_wait_us"] * 1000 + 100_000
    assert rig.received(on_time) == rig.received(late) == TORQUE and not rig.loop.fault
    assert rig.loop.late_acks == 0  # each frame reached the MCU before its next tick
