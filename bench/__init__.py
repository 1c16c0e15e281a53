"""Benchmarks: an upstream emulator, a load generator and a runner that compares direct vs through the gateway."""
