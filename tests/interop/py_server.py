"""A Python SDK (MCPServer, formerly FastMCP) server over Streamable HTTP, used as an HTTP upstream
in Warden's interop tests. Usage: python py_server.py PORT"""
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent
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


@mcp.tool()
async def ask_llm(question: str, ctx: Context) -> str:
    """Ask the client's LLM (sampling)."""
    r = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=20
    )
    return r.content.text if hasattr(r.content, "text") else str(r.content)


class Confirm(BaseModel):
    ok: bool


@mcp.tool()
async def confirm(ctx: Context) -> str:
    """Ask the user to confirm (elicitation)."""
    r = await ctx.elicit("Proceed?", Confirm)
    return f"action={r.action}"


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
    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
