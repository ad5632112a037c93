//! provider-emulator
