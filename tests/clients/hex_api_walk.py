"""Drives the published `hex-api` client (PyPI) through hexbroker's drop-in surface.

Nothing here knows about hexbroker: the client gets a base URL and a token, exactly as it would
for Hex itself. Prints one JSON line with what it saw; the Rust test judges it.
"""

import json
import os
import sys
import time

from hex_api import HexClient
from hex_api.exceptions import HexAuthenticationError

client = HexClient(api_key=os.environ["HEX_TOKEN"], base_url=os.environ["HEX_BASE_URL"])

page = client.projects.list(limit=2)
projects = page["values"]
project_id = projects[0]["id"]

run = client.projects.run(project_id, input_params={"region": "emea"})
run_id = run["runId"]

statuses = []
deadline = time.time() + 10
while time.time() < deadline:
    status = client.runs.get_status(project_id, run_id)["status"]
    statuses.append(status)
    if status == "RUNNING":
        break
    time.sleep(0.2)

client.runs.cancel(project_id, run_id)
final = client.runs.get_status(project_id, run_id)["status"]

refused = None
if os.environ.get("HEX_READ_ONLY_TOKEN"):
    read_only = HexClient(api_key=os.environ["HEX_READ_ONLY_TOKEN"], base_url=os.environ["HEX_BASE_URL"])
    read_only.projects.list(limit=1)
    try:
        read_only.projects.run(project_id)
    except HexAuthenticationError as error:
        refused = error.status_code

json.dump(
    {
        "project_count": len(projects),
        "has_next_page": page["pagination"]["after"] is not None,
        "run_id": run_id,
        "statuses": statuses,
        "final": final,
        "read_only_run_refused": refused,
    },
    sys.stdout,
)
print()
