"""
Wire formats: heartbeats over newline-delimited lines and over WebSocket,
and the write cap every framing shares.
"""
