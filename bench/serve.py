"""
Serve one of the baselines on an endpoint, for the scenarios to measure.

    python -m bench.serve floor tcp:1234:interface=127.0.0.1
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from ._baselines import DESIGNS, BaselineFactory

log = Logger()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("design", choices=sorted(DESIGNS))
    parser.add_argument("endpoint")
    parser.add_argument("--interval", type=float, default=25.0)
    parser.add_argument("--timeout", type=float, default=55.0)
    parser.add_argument("--sweep", type=float, default=10.0)
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    factory = BaselineFactory(
        DESIGNS[args.design], args.interval, args.timeout, reactor
    )
    factory.sweepPeriod = args.sweep
    serverFromString(reactor, args.endpoint).listen(factory).addErrback(
        lambda failure: (log.failure("cannot listen", failure), reactor.stop())
    )
    reactor.run()


if __name__ == "__main__":
    main()
