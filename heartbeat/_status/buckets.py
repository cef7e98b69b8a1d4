"""
The round-trip histogram's buckets: from loopback to across the planet, in
seconds.
"""

RTT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
