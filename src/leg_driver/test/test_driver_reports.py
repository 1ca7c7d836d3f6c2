"""What the drivers' shell reports: the level and message of a /diagnostics period, and enable's answer."""
from diagnostic_msgs.msg import DiagnosticStatus

from leg_driver.arming import arming_problem
from leg_driver.driver_node import current_problems, flat_counts, period_problems, period_status
from stochlite_bringup.run_health import HealthProblem

HEALTHY = {"armed": True, "mcu_armed": True, "fault": "", "over_temperature": False}


def test_dict_counters_are_reported_as_a_total_and_per_entry():
    counts = flat_counts({"invalid_states": 3, "mcu_errors": {"NO_SESSION": 2, "WATCHDOG": 1}, "cycles": 500})
    assert counts["invalid_states"] == 3 and counts["link_faults"] == 0 and "cycles" not in counts
    assert counts["mcu_errors"] == 3 and counts["mcu_errors.NO_SESSION"] == 2 and counts["mcu_errors.WATCHDOG"] == 1


def test_a_quiet_period_is_ok_and_a_fault_now_is_an_error_naming_it():
    assert period_status([], [], {}, "", 1.0) == (DiagnosticStatus.OK, "")
    problems = current_problems({"fault": "no state from the MCU for more than 2 cycles"})
    level, message = period_status(problems, [], {"link_faults": 1, "skipped_bytes": 400}, "", 1.0)
    assert level == DiagnosticStatus.ERROR
    assert message == ("link fault: no state from the MCU for more than 2 cycles; in the last 1.0 s: link_faults +1, "
                       "skipped_bytes +400")


def test_a_fault_that_came_and_went_between_two_messages_is_a_warning_naming_it():
    grown = {"link_faults": 1, "invalid_states": 12, "mcu_errors": 1, "mcu_errors.NO_SESSION": 1}
    level, message = period_status([], [], grown, "invalid state from the MCU: position[0] = nan", 0.25)
    assert level == DiagnosticStatus.WARN
    assert message == ("in the last 0.2 s: link_faults +1, invalid_states +12, mcu_errors.NO_SESSION +1; "
                       "last link fault: invalid state from the MCU: position[0] = nan")


def test_a_fault_of_the_last_message_that_ended_is_a_warning():
    level, message = period_status([], ["link fault: link closed"], {}, "link closed", 1.0)
    assert level == DiagnosticStatus.WARN and message == "over since the last report: link fault: link closed"


def test_over_temperature_now_or_in_the_period_is_an_error():
    assert period_status(current_problems({"over_temperature": True}), [], {}, "", 1.0)[0] == DiagnosticStatus.ERROR
    level, message = period_status([], [], {"mcu_flags": 1, "mcu_flags.OVER_TEMPERATURE": 1}, "", 1.0)
    assert level == DiagnosticStatus.ERROR and "reported over-temperature: the driver disarmed" in message


def test_a_period_s_health_records_are_its_fault_now_and_each_counter_that_grew():
    assert period_problems("hw_interface", [], {}, 1.0) == []
    grown = {"watchdog_trips": 3, "mcu_flags": 2, "mcu_flags.OVER_TEMPERATURE": 2}
    assert period_problems("hw_interface", ["link fault: link closed"], grown, 1.0) == [
        HealthProblem("hw_interface", "fault", 1, "link fault: link closed"),
        HealthProblem("hw_interface", "watchdog_trips", 3, "in the 1.0 s period"),
        HealthProblem("hw_interface", "mcu_flags.OVER_TEMPERATURE", 2, "in the 1.0 s period")]


def test_enable_says_why_the_loop_does_not_drive():
    assert arming_problem(HEALTHY) == ""
    assert "over-temperature" in arming_problem({**HEALTHY, "armed": False, "over_temperature": True})
    assert arming_problem({**HEALTHY, "fault": "link handshaking: wrong robot"}).startswith(
        "link fault: link handshaking: wrong robot (the driver arms only over a healthy link")
    assert arming_problem({"fault": "no answer from the control loop"}).startswith("link fault: no answer")
    assert "enable false came meanwhile" in arming_problem({**HEALTHY, "armed": False})
    assert "does not report ARMED" in arming_problem({**HEALTHY, "mcu_armed": False})
