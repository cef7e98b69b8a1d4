"""
Benchmarks for heartbeat: the library against a bare Twisted line server.

Run C{python -m bench --help}; C{python -m bench.timers} compares timer
designs.
"""
