"""Serial protocol, 500 Hz hardware interface and MCU emulator for the 2R leg and StochLite."""
