"""The official Python SDK client (2025 sessions) against plain-server.mjs through Warden: used by
scripts/interop.sh through HAProxy in front of three Warden replicas sharing a `[cluster] key`,
so that the session's requests land on different replicas (each takes the session up).
Usage: python py_plain.py http://127.0.0.1:PORT/mcp"""
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL = sys.argv[1]


async def main() -> int:
    async with streamable_http_client(URL) as (read, write, *_):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "warden", init
            for i in range(6):
                tools = [t.name for t in (await session.list_tools()).tools]
                assert tools == ["shout"], tools
                r = await session.call_tool("shout", {"text": f"hi {i}"})
                assert r.content[0].text == f"HI {i}", r
            await session.send_ping()
    print("py-plain: 13 requests over the replicas, all answered")
    return 0


sys.exit(anyio.run(main))
