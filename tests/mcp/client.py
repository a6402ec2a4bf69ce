"""A real MCP client (the Python `mcp` SDK) driving `safe-exec mcp` over stdio.

Usage: python client.py PLAN.json

PLAN: {"command": ..., "args": [...], "env": {...}, "steps": [...]}. Each step is
{"list_tools": true} or {"call": NAME, "arguments": {...}}. The client starts the server,
initializes, runs the steps in order, closes the connection (which ends the server), and prints
one JSON document on stdout: what it saw, for the Rust test to check.
"""

import asyncio
import json
import sys
import time

from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client


def content_item(item):
    """One content item as plain JSON, binary data kept as base64."""
    seen = {"type": item.type}
    if item.type == "text":
        seen["text"] = item.text
    elif item.type == "image":
        seen["mime_type"] = item.mime_type
        seen["data"] = item.data
    elif item.type == "resource":
        resource = item.resource
        seen["uri"] = str(resource.uri)
        seen["mime_type"] = resource.mime_type
        if hasattr(resource, "text"):
            seen["text"] = resource.text
        else:
            seen["blob"] = resource.blob
    return seen


async def main(plan):
    server = StdioServerParameters(command=plan["command"], args=plan["args"], env=plan["env"])
    transcript = {"steps": []}
    started = time.monotonic()
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            transcript["initialize"] = {
                "protocol_version": init.protocol_version,
                "server_name": init.server_info.name,
                "server_version": init.server_info.version,
                "has_tools": init.capabilities.tools is not None,
                "instructions": init.instructions,
            }
            for step in plan["steps"]:
                step_started = time.monotonic()
                if step.get("list_tools"):
                    listed = await session.list_tools()
                    seen = {
                        "tools": [
                            {
                                "name": tool.name,
                                "description": tool.description,
                                "input_schema": tool.input_schema,
                                "output_schema": tool.output_schema,
                            }
                            for tool in listed.tools
                        ]
                    }
                else:
                    try:
                        # The SDK checks structuredContent against the tool's outputSchema.
                        result = await session.call_tool(step["call"], step["arguments"])
                        seen = {
                            "is_error": result.is_error,
                            "structured": result.structured_content,
                            "content": [content_item(item) for item in result.content],
                        }
                    except MCPError as error:
                        seen = {"protocol_error": {"code": error.code, "message": error.message}}
                seen["seconds"] = round(time.monotonic() - step_started, 3)
                transcript["steps"].append(seen)
        closing = time.monotonic()
    # Leaving stdio_client closed the server's stdin and waited for it to exit (signalling it
    # only if it had not exited within the SDK's grace period).
    transcript["close_seconds"] = round(time.monotonic() - closing, 3)
    transcript["total_seconds"] = round(time.monotonic() - started, 3)
    json.dump(transcript, sys.stdout)


if __name__ == "__main__":
    with open(sys.argv[1]) as plan_file:
        asyncio.run(main(json.load(plan_file)))
