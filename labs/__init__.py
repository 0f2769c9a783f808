"""Instruments, not patterns: the failure lab, the throughput benchmark, the persistence
experiment, the autoscaling simulator, and the throwaway servers they and the tests start.

The pages draw their tables and figures from what these measure; nothing under
``examples/`` imports them.
"""
