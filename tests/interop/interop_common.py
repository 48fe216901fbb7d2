"""What the Python interop clients share: a check runner with its tally, the text of a tool
result, and the client-side callbacks (sampling, elicitation — Warden's approval prompt
included —, roots), each answering with `tag` so a test sees whose answer reached the server."""
import mcp_types as types

results = {"passed": 0, "failed": 0}
approvals: list = []


def text(r) -> str:
    return "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text")


async def check(name, coro):
    try:
        await coro
        results["passed"] += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure and continue
        results["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def callbacks(tag: str):
    """(sampling, elicitation, roots) callbacks answering as `tag`."""

    async def sampling(context, params):
        return types.CreateMessageResult(
            role="assistant", model="interop", content=types.TextContent(type="text", text=f"{tag}-sampled:{len(params.messages)}")
        )

    async def elicitation(context, params):
        if params.message.startswith("Approval needed"):  # Warden asking its user to approve a call
            approvals.append(params.message)
            return types.ElicitResult(action="accept", content={"approve": True})
        if params.message.startswith("Please provide inputs"):  # the reference server's long form
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"ok": True})

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///tmp/{tag}-root", name=f"{tag}-root")])

    return sampling, elicitation, roots
