"""
The sessions' options: C{--resume-window}, C{--resume-buffer} and
C{--resume-buffer-bytes}.
"""

from __future__ import annotations

from twisted.python import usage

from .options import positive_int, seconds_or_none


class SessionOptions(usage.Options):
    """
    Mixed into the plugin's options, before L{HeartbeatOptions} (whose
    C{max-line-length} the byte bound is checked against).  After parsing,
    C{resume-window} holds seconds (C{0}: no sessions) and the two bounds
    ints.
    """

    optParameters = [
        [
            "resume-window",
            None,
            "120",
            "Seconds a client's session lives after its last connection is "
            "lost, for the client to resume it with nothing lost (0: offer no "
            "sessions).",
        ],
        [
            "resume-buffer",
            None,
            "10000",
            "Lines a session keeps until its client acknowledges them; one "
            "more ends the session (its client is told 'overflow').",
        ],
        [
            "resume-buffer-bytes",
            None,
            "1048576",
            "The same bound in bytes, at least --max-line-length.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["resume-window"] = seconds_or_none(self, "resume-window") or 0.0
        self["resume-buffer"] = positive_int(self, "resume-buffer")
        self["resume-buffer-bytes"] = positive_int(self, "resume-buffer-bytes")
        if self["resume-buffer-bytes"] < self["max-line-length"]:
            raise usage.UsageError(
                "--resume-buffer-bytes must be at least --max-line-length "
                f"({self['resume-buffer-bytes']} < {self['max-line-length']}): "
                "one long line would end a session"
            )
