"""
The README's table of the push API's operations, rendered from the one
description of the API (heartbeat/web/openapi.json), so that the two
cannot drift apart.
"""

import json

from heartbeat._server.assets import WEB_ROOT


def operations_table() -> str:
    """
    The reStructuredText list-table of every operation: its method and
    path, what it does, its answer, and the statuses of its errors.
    """
    description = json.loads((WEB_ROOT / "openapi.json").read_text())
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 22 34 26 18",
        "",
        "   * - Operation",
        "     - What it does",
        "     - ``200``",
        "     - Errors",
    ]
    for path, item in description["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = ", ".join(
                f"``{status}`` ({_reason(responses[status])})"
                for status in responses if status != "200")
            answer = responses["200"]
            example = answer["content"]["application/json"].get("example")
            lines += [
                f"   * - ``{method.upper()} {path}``",
                f"     - {operation['summary']}",
                f"     - {answer['description']}"
                + (f" ``{json.dumps(example)}``" if example is not None else ""),
                f"     - {errors}",
            ]
    return "\n".join(lines) + "\n"


# What each shared error response is called in the table.
_REASONS = {"BadRequest": "bad input", "Unauthorized": "no token",
            "TooLong": "too long", "ClusterUnavailable": "cluster down"}


def _reason(response: dict) -> str:
    return _REASONS[response["$ref"].rsplit("/", 1)[1]]
