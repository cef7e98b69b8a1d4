"""
The server role: admission, the line and WebSocket connections of the
ready server, and the factory that counts them.
"""
