"""Interop: the official Python SDK client in MCP 2026-07-28 mode (stateless, `mode="auto"`:
it probes `server/discover`), through Warden, against the reference server (stdio upstream
"everything", 2025: every multi round-trip and its resource subscription are Warden's
translation) and a Python SDK server (HTTP upstream "py", which Warden speaks 2026-07-28 to).
Usage: python py_client_2026.py http://127.0.0.1:PORT/mcp"""
import sys

import anyio
from mcp.client.client import Client

from interop_common import approvals, callbacks, check, results, text

URL = sys.argv[1]
sampling, elicitation, roots = callbacks("py26")


async def main():
    async with Client(
        URL,
        mode="auto",
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
    ) as c:

        async def era():
            assert c.session.protocol_version == "2026-07-28", c.session.protocol_version

        async def listing():
            names = [t.name for t in (await c.list_tools()).tools]
            assert "everything__echo" in names and "py__add" in names, names

        async def calls():
            assert "hi py26" in text(await c.call_tool("everything__echo", {"message": "hi py26"}))
            assert text(await c.call_tool("py__add", {"a": 20, "b": 22})) == "42"

        async def sampling_elicitation_roots():
            r = await c.call_tool("py__ask_llm", {"question": "why"})
            assert "py26-sampled:1" in text(r), r
            r = await c.call_tool("everything__trigger-sampling-request", {"prompt": "x", "maxTokens": 5})
            assert "py26-sampled:1" in str(r.content), r
            r = await c.call_tool("py__confirm", {})
            assert "accept" in text(r), r
            # a TypeScript SDK v2 server's question, 2026 on both hops (keys and state: Warden's)
            r = await c.call_tool("ts26__confirm", {})
            assert "action=accept ok=True" in text(r) or "action=accept ok=true" in text(r), r
            r = await c.call_tool("everything__get-roots-list", {})
            assert "py26-root" in str(r.content), r
            # the reference server's own elicitation (2025: Warden's translation), declined
            r = await c.call_tool("everything__trigger-elicitation-request", {})
            assert "decline" in str(r.content).lower(), r

        async def resources_and_prompts():
            uris = [str(r.uri) for r in (await c.list_resources()).resources]
            assert "warden://py/config://app" in uris, uris
            r = await c.read_resource("warden://py/greeting://grace")
            assert "Hello, grace" in r.contents[0].text
            p = await c.get_prompt("py__review", {"code": "y = 2"})
            assert "y = 2" in str(p.messages)

        async def approval_by_input_required():
            r = await c.call_tool("everything__get-sum", {"a": 2, "b": 3})
            assert "5" in text(r), r
            assert len(approvals) == 1 and "get-sum" in approvals[0], approvals

        async def subscription_update():
            # Through Warden's pooled session to the 2026 upstream's own listen stream.
            uri = "warden://py/config://app"
            async with c.listen(resource_subscriptions=[uri]) as sub:
                for _ in range(20):
                    await c.call_tool("py__touch_config", {})
                    with anyio.move_on_after(0.3):
                        event = await sub.__anext__()
                        assert getattr(event, "uri", None) == uri, event
                        return
            raise AssertionError("no resource update arrived")

        async def subscription_update_2025():
            # The 2025 reference server's update (it sends one when its updates are switched on,
            # then every 5 s), through the pooled session's subscription to the stdio upstream.
            uris = [str(r.uri) for r in (await c.list_resources()).resources]
            uri = next(u for u in uris if u.startswith("warden://everything/"))
            async with c.listen(resource_subscriptions=[uri]) as sub:
                await c.call_tool("everything__toggle-subscriber-updates", {})
                try:
                    with anyio.fail_after(15):
                        while True:
                            event = await sub.__anext__()
                            if getattr(event, "uri", None) == uri:
                                return
                finally:
                    await c.call_tool("everything__toggle-subscriber-updates", {})

        for name, coro in [
            ("2026-07-28 negotiated (server/discover)", era()),
            ("subscription: a resource update through subscriptions/listen", subscription_update()),
            ("subscription: the 2025 reference server's update, to this 2026 client", subscription_update_2025()),
            ("tools/list across upstreams", listing()),
            ("tools/call on both upstreams", calls()),
            ("sampling, elicitation and roots as input_required", sampling_elicitation_roots()),
            ("resources and prompts", resources_and_prompts()),
            ("approval as an input_required round trip", approval_by_input_required()),
        ]:
            await check(name, coro)
    print(f"py-client-2026: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


anyio.run(main)
