"""A webhook receiver that checks every delivery's signature, as your own service would.

It verifies the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) with the ``standardwebhooks`` package, answers 204 to a delivery that
verifies and 401 to anything else, and prints one line per request:

    WEBHOOK_SECRET=whsec_... python docs/examples/receiver.py 8098
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


class Receiver(BaseHTTPRequestHandler):
    """Any method, any path: verify, then say so."""

    webhook = Webhook(os.environ["WEBHOOK_SECRET"])

    def _receive(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.webhook.verify(body, dict(self.headers), json_parse=False)
        except WebhookVerificationError as error:
            print(f"REJECTED {self.command} {self.path}: {error}", flush=True)
            self.send_response(401)
        else:
            event = self.headers.get("X-Hub-Event", "")
            print(f"verified {self.command} {self.path} {event}: {body[:100]!r}", flush=True)
            self.send_response(204)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _receive

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: _receive prints the one line that matters."""


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8098
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)  # port 0: any free one
    print(f"receiving on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
