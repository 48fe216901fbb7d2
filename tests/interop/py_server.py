"""A Python SDK (MCPServer, formerly FastMCP) server over Streamable HTTP, used as an HTTP upstream
in Warden's interop tests (and over stdio). Usage: python py_server.py PORT | --stdio"""
import sys

from typing import Annotated

import anyio
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve, Sample
from mcp_types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel

mcp = MCPServer("warden-interop-py")


@mcp.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@mcp.tool()
async def long_task(steps: int, ctx: Context) -> str:
    """Report progress for each step."""
    for i in range(1, steps + 1):
        await anyio.sleep(0.05)
        await ctx.report_progress(i, steps, f"step {i}")
    return f"done {steps}"


@mcp.tool()
async def log_steps(ctx: Context) -> str:
    """Emit log messages."""
    await ctx.info("first log line")
    await ctx.warning("second log line")
    return "logged"


def sample_question(question: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=20)


# Written the SDK 2.x way (resolvers), so each works in both generations: a 2025 session gets a
# request mid-call, a 2026-07-28 request an `input_required` result (Warden speaks 2026 to it).
@mcp.tool()
async def ask_llm(question: str, answer: Annotated[CreateMessageResult, Resolve(sample_question)]) -> str:
    """Ask the client's LLM (sampling)."""
    return answer.content.text if hasattr(answer.content, "text") else str(answer.content)


class Confirm(BaseModel):
    ok: bool


def ask_confirm() -> Elicit[Confirm]:
    return Elicit("Proceed?", Confirm)


@mcp.tool()
async def confirm(outcome: Annotated[ElicitationResult[Confirm], Resolve(ask_confirm)]) -> str:
    """Ask the user to confirm (elicitation)."""
    return f"action={outcome.action}"


@mcp.tool()
async def touch_config(ctx: Context) -> str:
    """Announce that config://app changed (its subscribers get notifications/resources/updated)."""
    await ctx.notify_resource_updated("config://app")
    return "touched"


@mcp.resource("config://app")
def app_config() -> str:
    """Application configuration."""
    return "interop configuration"


@mcp.resource("greeting://{name}")
def greeting(name: str) -> str:
    """A greeting."""
    return f"Hello, {name}!"


@mcp.prompt()
def review(code: str) -> str:
    """Review code."""
    return f"Please review this code:\n{code}"


if __name__ == "__main__":
    if sys.argv[1] == "--stdio":
        mcp.run(transport="stdio")
    else:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
