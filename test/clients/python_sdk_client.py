"""The Python MCP SDK (mcp 2.x) as a user runs it against mcp-warden: a bearer token from the
environment, one connection per mode, tools/list then tools/call. Prints one JSON line per mode
for the calling test (test/integration/clients.test.ts) to check; exits non-zero on any failure,
with the SDK's own error (never the token)."""
import asyncio
import json
import os
import sys

from mcp import Client, MCPError
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def run(url: str, token: str, mode: str) -> dict:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            called = await client.call_tool("add", {"a": 2, "b": 3})
            try:
                await client.call_tool("delete_repo", {"repo": "prod"})
                denied = None
            except MCPError as e:
                denied = {"code": e.code, "message": e.message}
            return {
                "mode": mode,
                "protocolVersion": client.protocol_version,
                "tools": sorted(t.name for t in tools.tools),
                "add": [c.text for c in called.content if getattr(c, "text", None) is not None],
                "denied": denied,
            }


async def main() -> int:
    url, token = os.environ["MCP_URL"], os.environ["MCP_TOKEN"]
    for mode in sys.argv[1:]:
        try:
            print(json.dumps(await run(url, token, mode)), flush=True)
        except BaseException as e:  # noqa: BLE001 - report whatever the SDK raised, then fail
            # A TaskGroup wraps the SDK's real error: report the innermost ones.
            while isinstance(e, BaseExceptionGroup) and len(e.exceptions) > 0:
                e = e.exceptions[0]
            print(json.dumps({"mode": mode, "error": f"{type(e).__name__}: {e}"}), flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
