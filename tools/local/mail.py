"""The emails MiniStack's SES has sent: ``make mail`` prints them, one JSON object per line.

MiniStack keeps every email its SES accepted and serves them at
``GET /_ministack/ses/messages``; nothing is delivered anywhere (unless it is given an
SMTP relay). Each line has ``to``, ``subject``, ``body``, ``from``, ``id`` and ``sentAt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tools.shared import ROOT

ENDPOINT_FILE = ROOT / ".local" / "endpoint"


def sent_emails(endpoint: str, sender: str | None = None) -> list[dict[str, Any]]:
    """Every email sent so far (from ``sender`` only, if given), oldest first."""
    with urllib.request.urlopen(f"{endpoint}/_ministack/ses/messages", timeout=5) as resp:  # noqa: S310 - loopback
        data = json.load(resp)
    found = []
    for records in (data.get("messages") or {}).values():
        for rec in records:
            if sender and rec.get("Source") != sender:
                continue
            found.append(
                {
                    "to": rec.get("To") or [],
                    "subject": rec.get("Subject", ""),
                    "body": rec.get("BodyText", ""),
                    "from": rec.get("Source", ""),
                    "id": rec.get("MessageId", ""),
                    "sentAt": datetime.fromtimestamp(rec.get("Timestamp", 0), UTC).isoformat(),
                }
            )
    return sorted(found, key=lambda m: m["sentAt"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local.mail", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="MiniStack's endpoint (default: the running local stack's)")
    args = parser.parse_args(argv)
    endpoint = args.endpoint
    if not endpoint:
        try:
            endpoint = ENDPOINT_FILE.read_text().strip()
        except OSError:
            print("no local stack is running (start it with `make local`)", file=sys.stderr)
            return 1
    try:
        emails = sent_emails(endpoint)
    except OSError as exc:
        print(f"cannot read the emails from {endpoint}: {exc} (is `make local` running?)", file=sys.stderr)
        return 1
    for email in emails:
        print(json.dumps(email, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
