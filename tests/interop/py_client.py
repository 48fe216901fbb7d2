"""Interop: the official Python SDK client, through Warden, against the reference server (stdio
upstream "everything") and a Python SDK server (HTTP upstream "py").
Usage: python py_client.py http://127.0.0.1:PORT/mcp"""
import sys

import anyio
from interop_common import approvals, callbacks, check, results, text
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL = sys.argv[1]
logs: list = []
sampling, elicitation, roots = callbacks("py")


async def logging_cb(params):
    logs.append(params)


async def main():
    async with streamable_http_client(URL) as (read, write, *_):
        async with ClientSession(
            read,
            write,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            list_roots_callback=roots,
            logging_callback=logging_cb,
        ) as s:
            init = await s.initialize()

            async def server_info():
                assert init.server_info.name == "warden", init.server_info

            async def listing():
                names = [t.name for t in (await s.list_tools()).tools]
                assert "everything__echo" in names and "py__add" in names, names

            async def calls():
                assert "hi py" in text(await s.call_tool("everything__echo", {"message": "hi py"}))
                assert text(await s.call_tool("py__add", {"a": 20, "b": 22})) == "42"

            async def progress():
                seen = []

                async def on_progress(p, total, message):
                    seen.append(p)

                r = await s.call_tool("everything__trigger-long-running-operation", {"duration": 0.3, "steps": 3},
                                      progress_callback=on_progress)
                assert "completed" in text(r), r
                assert seen == [1, 2, 3], seen

            async def sampling_and_elicitation():
                r = await s.call_tool("py__ask_llm", {"question": "why"})
                assert "py-sampled:1" in text(r), r
                r = await s.call_tool("everything__trigger-sampling-request", {"prompt": "x", "maxTokens": 5})
                assert "py-sampled:1" in str(r.content), r
                r = await s.call_tool("py__confirm", {})
                assert "accept" in text(r), r

            async def roots_list():
                r = await s.call_tool("everything__get-roots-list", {})
                assert "py-root" in str(r.content), r

            async def logging():
                await s.set_logging_level("debug")
                before = len(logs)
                await s.call_tool("py__log_steps", {})
                await anyio.sleep(0.2)
                assert len(logs) - before >= 2, logs[before:]

            async def resources_and_prompts():
                uris = [str(r.uri) for r in (await s.list_resources()).resources]
                assert "warden://py/config://app" in uris, uris
                r = await s.read_resource("warden://py/greeting://grace")
                assert "Hello, grace" in r.contents[0].text
                p = await s.get_prompt("py__review", {"code": "y = 2"})
                assert "y = 2" in str(p.messages)

            async def ping():
                await s.send_ping()

            async def approval_by_elicitation():
                r = await s.call_tool("everything__get-sum", {"a": 2, "b": 3})
                assert "5" in text(r), r
                assert len(approvals) == 1 and "get-sum" in approvals[0] and '"a": 2' in approvals[0], approvals

            for name, c in [
                ("initialize answered by Warden", server_info()),
                ("tools/list federated", listing()),
                ("tools/call on both upstreams", calls()),
                ("progress relayed", progress()),
                ("sampling and elicitation relayed", sampling_and_elicitation()),
                ("roots relayed", roots_list()),
                ("logging relayed", logging()),
                ("resources and prompts", resources_and_prompts()),
                ("ping", ping()),
                ("approval asked of this client's user (elicitation), approved", approval_by_elicitation()),
            ]:
                await check(name, c)
    print(f"py-client: {results['passed']} passed, {results['failed']} failed")
    sys.exit(0 if results["failed"] == 0 and results["passed"] > 0 else 1)


anyio.run(main)
