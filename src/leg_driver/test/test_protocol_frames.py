"""The frame codec on every frame type (leg and StochLite profiles), truncated frames, garbage and bad CRCs."""
import random

import pytest

from leg_driver.protocol_frames import (MAX_PAYLOAD, PROTOCOL_VERSION, SERVOS, START, Enable, Error, ErrorCode,
                                        Frame, FrameDecoder, Heartbeat, Hello, HelloAck, MsgType, Position, Robot,
                                        ServoFlags, State, Status, StochliteState, Torque, crc16, encode)

STATE = State(mcu_time_us=4_000_000_123, ack_seq=65535, status=Status.ARMED | Status.TORQUE_LIMITED,
              position=(0.5, -1.25), velocity=(-3.0, 2.5), torque=(10.0, -0.125))
STOCHLITE_STATE = StochliteState(
    mcu_time_us=123_456, ack_seq=42, status=Status.ARMED | Status.WATCHDOG,
    position=tuple(0.25 * k - 1.5 for k in range(SERVOS)), velocity=tuple(-0.5 * k for k in range(SERVOS)),
    torque=tuple(0.125 * k for k in range(SERVOS)),
    servo_flags=tuple(int(ServoFlags.TORQUE_ON | (ServoFlags.POSITION_LIMITED if k == 3 else 0)) for k in range(SERVOS)),
    quaternion=(0.0, 0.5, 0.0, 0.75), gyro=(0.125, -0.25, 1.5), accel=(0.5, -0.25, 9.75))
MESSAGES = [Hello(), Hello(PROTOCOL_VERSION, Robot.STOCHLITE), HelloAck(PROTOCOL_VERSION, 2, 500),
            HelloAck(PROTOCOL_VERSION, SERVOS, 100, Robot.STOCHLITE), STATE, STOCHLITE_STATE, Torque((1.5, -2.25)),
            Position(tuple(0.5 - 0.125 * k for k in range(SERVOS))), Enable(True), Enable(False), Heartbeat(),
            Error(ErrorCode.BAD_CRC, 7), Error(ErrorCode.ROBOT_MISMATCH, Robot.STOCHLITE)]


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_frame_type_round_trips(message):
    frame = encode(message, seq=70_000)  # the sequence number wraps at 2^16
    assert frame[:2] == START and frame[2] == len(frame) - 8
    assert FrameDecoder().feed(frame) == [Frame(70_000 % 65536, message)]


def test_frames_split_at_every_byte_come_out_once_and_in_order():
    stream = b"".join(encode(m, seq) for seq, m in enumerate(MESSAGES))
    decoder = FrameDecoder()
    frames = [f for byte in stream for f in decoder.feed(bytes([byte]))]
    assert frames == [Frame(seq, m) for seq, m in enumerate(MESSAGES)]
    assert (decoder.crc_errors, decoder.resyncs, decoder.skipped_bytes) == (0, 0, 0)


def test_a_truncated_frame_waits_for_the_rest_and_a_cut_off_one_is_skipped():
    frame = encode(STATE, 1)
    decoder = FrameDecoder()
    assert decoder.feed(frame[:-3]) == []
    assert decoder.feed(frame[-3:]) == [Frame(1, STATE)]
    # a frame cut short by a lost byte run: once enough bytes follow, its CRC fails and the next ones survive
    assert decoder.feed(frame[:10] + encode(Heartbeat(), 2)) == []
    assert decoder.feed(encode(STATE, 3)) == [Frame(2, Heartbeat()), Frame(3, STATE)]
    assert decoder.crc_errors == 1


def test_garbage_between_frames_is_skipped_and_counted():
    rng = random.Random(0)
    frames, stream = [], b""
    for seq in range(200):
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12)))
        message = MESSAGES[seq % len(MESSAGES)]
        stream += garbage + encode(message, seq)
        frames.append(Frame(seq, message))
    decoder = FrameDecoder()
    got = [f for k in range(0, len(stream), 17) for f in decoder.feed(stream[k:k + 17])]
    assert got == frames
    assert decoder.resyncs > 100 and decoder.skipped_bytes > 500


def test_a_bad_crc_drops_only_that_frame():
    bad = bytearray(encode(STATE, 5))
    bad[-1] ^= 0x40
    decoder = FrameDecoder()
    assert decoder.feed(encode(Torque((1.0, 2.0)), 4) + bytes(bad) + encode(Heartbeat(), 6)) == [
        Frame(4, Torque((1.0, 2.0))), Frame(6, Heartbeat())]
    assert decoder.crc_errors == 1


def test_a_corrupt_length_byte_resynchronises_on_the_next_frame():
    bad = bytearray(encode(STATE, 5))
    bad[2] = MAX_PAYLOAD + 1  # impossible length
    worse = bytearray(encode(STATE, 6))
    worse[2] = 3  # plausible but wrong length: the CRC catches it
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + bytes(worse) + encode(Enable(True), 7)) == [Frame(7, Enable(True))]
    assert decoder.crc_errors == 1 and decoder.resyncs >= 2


def test_a_valid_frame_of_unknown_type_or_wrong_length_is_counted_not_returned():
    from leg_driver.protocol_frames import encode_raw
    stream = encode_raw(0x7F, b"", 1) + encode_raw(MsgType.STATE, b"\0\0\0\0", 2)
    decoder = FrameDecoder()
    assert decoder.feed(stream + encode(Heartbeat(), 3)) == [Frame(3, Heartbeat())]
    assert decoder.bad_frames == 2 and decoder.crc_errors == 0


def test_the_stochlite_frames_have_their_documented_sizes():
    assert len(encode(STOCHLITE_STATE, 1)) == 8 + 204 and MAX_PAYLOAD == 204  # docs/serial_protocol.md
    assert len(encode(Position((0.0,) * SERVOS), 1)) == 8 + 48
    assert encode(Hello(PROTOCOL_VERSION, Robot.STOCHLITE), 1)[6:8] == bytes([PROTOCOL_VERSION, 2])


def test_a_stochlite_state_cut_off_or_corrupted_is_dropped_and_the_next_survives():
    frame = encode(STOCHLITE_STATE, 9)
    decoder = FrameDecoder()
    assert decoder.feed(frame[:100]) == []
    assert decoder.feed(frame[100:]) == [Frame(9, STOCHLITE_STATE)]
    bad = bytearray(frame)
    bad[50] ^= 0x01  # one flipped bit inside the servo positions
    assert decoder.feed(bytes(bad) + encode(Position((0.125,) * SERVOS), 10)) == [Frame(10, Position((0.125,) * SERVOS))]
    assert decoder.crc_errors == 1
    wrong_length = encode(Position((0.125,) * SERVOS), 11)
    body = bytes([wrong_length[2] - 4]) + wrong_length[3:6] + wrong_length[6:-6]  # 11 targets
    from leg_driver.protocol_frames import CRC
    assert decoder.feed(START + body + CRC.pack(crc16(body))) == [] and decoder.bad_frames == 1
