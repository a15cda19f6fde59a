"""Verifies webhook deliveries with the Standard Webhooks reference library (PyPI
`standardwebhooks`), independently of hexbroker's own signing code.

Reads a JSON list of {"secret", "headers", "body"} on stdin; for each, verifies the body and
headers under the secret. Exits 0 and prints one "ok" per item when all verify; exits 1 naming the
first that does not. Exits 3 when the library is not installed.
"""

import json
import sys

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError:
    print("standardwebhooks is not installed", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    items = json.load(sys.stdin)
    for index, item in enumerate(items):
        try:
            Webhook(item["secret"]).verify(item["body"], item["headers"])
        except WebhookVerificationError as error:
            print(f"item {index}: {error}", file=sys.stderr)
            return 1
        print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
