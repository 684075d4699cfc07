"""Sends plain-text email through SES (v2 ``SendEmail``) from the stage's sender address.

Every refusal is raised: the notification's SQS message is retried and, still refused,
lands in the notifications dead-letter queue (alarmed), from where it can be redriven
once the cause (an unverified sender, the sandbox, a quota) is fixed. Treating a
refusal as final would lose the email to a misconfiguration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stubs are a dev dependency; Lambda runs without them
    from types_boto3_sesv2 import SESV2Client


class SesSender:
    def __init__(self, client: SESV2Client, sender: str, configuration_set: str | None = None) -> None:
        self._ses = client
        self._sender = sender
        self._configuration_set = configuration_set

    def send(self, to: str, subject: str, body: str) -> str:
        params: dict[str, Any] = {
            "FromEmailAddress": self._sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                }
            },
        }
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        return self._ses.send_email(**params).get("MessageId", "")
