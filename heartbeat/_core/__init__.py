"""
The liveness core: the timing wheel, the heartbeat mixin and the backoff.
No I/O, no framing: everything above builds on these.
"""
