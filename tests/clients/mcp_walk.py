"""Drives hexbroker's /mcp with the official MCP Python SDK (the `mcp` package): its
streamable HTTP client, a full key and a read-only key. Prints what it saw as one JSON line."""

import asyncio
import json
import os

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def walk(url, token, calls, connection=None):
    seen = {}
    headers = {"Authorization": f"Bearer {token}"}
    if connection:
        headers["Connection-Id"] = connection
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                seen["protocol_version"] = init.protocol_version
                seen["server"] = init.server_info.name
                tools = await session.list_tools()
                seen["tools"] = [t.name for t in tools.tools]
                seen["run_read_only_hint"] = [
                    t.annotations.read_only_hint for t in tools.tools if t.name == "list_projects"
                ]
                for name, arguments in calls:
                    result = await session.call_tool(name, arguments)
                    seen[name] = {
                        "is_error": bool(result.is_error),
                        "structured": result.structured_content,
                        "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
                    }
                    if name == "run_project" and not result.is_error:
                        run_id = result.structured_content.get("runId")
                        project = arguments["projectId"]
                        status = await session.call_tool(
                            "get_run_status", {"projectId": project, "runId": run_id}
                        )
                        seen["get_run_status"] = status.structured_content
                        cancel = await session.call_tool("cancel_run", {"projectId": project, "runId": run_id})
                        seen["cancel_run"] = {"is_error": bool(cancel.is_error)}
                try:
                    await session.call_tool("get_run_status", {"projectId": 42})
                    seen["bad_arguments"] = "accepted"
                except Exception as error:  # the SDK raises the JSON-RPC error
                    seen["bad_arguments"] = type(error).__name__ + ": " + str(error)
    return seen


async def main():
    url = os.environ["MCP_URL"]
    project = os.environ["PROJECT_ID"]
    full = await walk(
        url,
        os.environ["MCP_TOKEN"],
        [("list_projects", {"limit": 10}), ("run_project", {"projectId": project, "body": {}})],
    )
    read = await walk(
        url,
        os.environ["MCP_READ_TOKEN"],
        [("run_project", {"projectId": project, "body": {}})],
        connection=os.environ["MCP_READ_CONNECTION"],
    )
    print(json.dumps({"full": full, "read": read}))


asyncio.run(main())
