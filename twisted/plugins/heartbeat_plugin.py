from twisted.application.service import ServiceMaker

heartbeat = ServiceMaker(
    "heartbeat",
    "heartbeat._service.tap",
    "Heartbeat line server: pings silent peers, drops dead ones.",
    "heartbeat",
)
