"""
The operator's view: the records behind the status page, the page itself
and the Prometheus metrics.
"""
