"""
The client role: reconnecting factories for lines and WebSocket, and the
connector that drives them through any endpoint.
"""
