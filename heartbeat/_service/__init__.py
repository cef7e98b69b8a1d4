"""
The service layer: twistd's options and C{makeService}, one node's
listeners, the worker supervisor and the client command.
"""
