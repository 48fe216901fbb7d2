"""A native MCP 2026-07-28 server, written with the Python SDK (`mcp` 2.3, `MCPServer`): the
multi round-trip tools and prompt of the conformance suite's `input-required-result-*`
scenarios, each returning its own `InputRequiredResult` (its own question keys, its own signed
`requestState`). Warden runs the suite through itself in front of it (`scripts/conformance.sh`):
a 2026 upstream nobody here wrote the protocol code of.
Usage: python py_mrtr_2026.py PORT | --stdio"""
import base64
import hashlib
import hmac
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult

mcp = MCPServer("warden-mrtr-2026")
KEY = os.urandom(32)


def ask(requests: dict[str, Any], state: dict | None = None) -> InputRequiredResult:
    body: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        body["requestState"] = seal(state)
    return InputRequiredResult.model_validate(body)


def seal(state: dict) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    mac = hmac.new(KEY, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def unseal(token: str | None) -> dict | None:
    """The state this server issued, or None (absent, altered or not ours)."""
    if not token or "." not in token:
        return None
    payload, mac = token.rsplit(".", 1)
    if not hmac.compare_digest(mac, hmac.new(KEY, payload.encode(), hashlib.sha256).hexdigest()):
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        return None


def answers(ctx: Context) -> dict[str, Any]:
    r = ctx.input_responses or {}
    return {k: (v.model_dump(by_alias=True, exclude_none=True) if hasattr(v, "model_dump") else v) for k, v in r.items()}


def form(message: str, field: str, kind: str = "string") -> dict:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sample(text: str, max_tokens: int) -> dict:
    return {"method": "sampling/createMessage",
            "params": {"messages": [{"role": "user", "content": {"type": "text", "text": text}}], "maxTokens": max_tokens}}


ROOTS = {"method": "roots/list", "params": {}}


def accepted(a: Any, field: str) -> str | None:
    if isinstance(a, dict) and a.get("action") == "accept" and isinstance(a.get("content"), dict):
        v = a["content"].get(field)
        return str(v) if v is not None else None
    return None


def sampled_text(a: Any) -> str | None:
    if isinstance(a, dict) and isinstance(a.get("content"), dict):
        return a["content"].get("text")
    return None


@mcp.tool()
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks the user's name."""
    name = accepted(answers(ctx).get("user_name"), "name")
    if name is None:
        return ask({"user_name": form("What is your name?", "name")})
    return f"Hello, {name}!"


@mcp.tool()
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model a question."""
    text = sampled_text(answers(ctx).get("capital_question"))
    if text is None:
        return ask({"capital_question": sample("What is the capital of France?", 100)})
    return f"The model said: {text}"


@mcp.tool()
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    """Asks the client for its roots."""
    roots = answers(ctx).get("client_roots")
    if not isinstance(roots, dict) or not isinstance(roots.get("roots"), list):
        return ask({"client_roots": ROOTS})
    return "Roots: " + ", ".join(str(r.get("uri")) for r in roots["roots"] if isinstance(r, dict))


@mcp.tool()
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    """Asks for a confirmation, with state kept by the client."""
    state = unseal(ctx.request_state)
    ok = answers(ctx).get("confirm")
    if state is None or state.get("tool") != "request_state" or not isinstance(ok, dict):
        return ask({"confirm": form("Please confirm", "ok", "boolean")}, {"tool": "request_state"})
    return f"state-ok: confirmed={ok.get('action')}"


@mcp.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """Asks a name, a greeting and the roots at once."""
    a = answers(ctx)
    state = unseal(ctx.request_state)
    if state is None or not all(k in a for k in ("user_name", "greeting", "client_roots")):
        return ask({"user_name": form("What is your name?", "name"),
                    "greeting": sample("Generate a greeting", 50),
                    "client_roots": ROOTS}, {"tool": "multiple_inputs"})
    return f"Hello, {accepted(a['user_name'], 'name')}! The model said: {sampled_text(a['greeting'])}"


@mcp.tool()
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    """Asks twice, one question after the other."""
    a = answers(ctx)
    state = unseal(ctx.request_state) or {}
    if state.get("round") == 2 and accepted(a.get("step2"), "color") is not None:
        return f"Hello, {state.get('name')}! Your favorite color is {accepted(a['step2'], 'color')}."
    if state.get("round") == 1 and accepted(a.get("step1"), "name") is not None:
        name = accepted(a["step1"], "name")
        return ask({"step2": form("Step 2: What is your favorite color?", "color")}, {"round": 2, "name": name})
    return ask({"step1": form("Step 1: What is your name?", "name")}, {"round": 1})


@mcp.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Asks a name; refuses a state it did not sign."""
    if ctx.request_state is not None and unseal(ctx.request_state) is None:
        raise ValueError("requestState failed its integrity check")
    name = accepted(answers(ctx).get("user_name"), "name")
    if name is None or ctx.request_state is None:
        return ask({"user_name": form("What is your name?", "name")}, {"tool": "tampered_state"})
    return f"Hello, {name}!"


@mcp.tool()
async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only for what the request's client capabilities allow."""
    caps = ctx.client_capabilities
    a = answers(ctx)
    wanted: dict[str, Any] = {}
    if caps is not None and caps.elicitation is not None and "user_name" not in a:
        wanted["user_name"] = form("What is your name?", "name")
    if caps is not None and caps.sampling is not None and "greeting" not in a:
        wanted["greeting"] = sample("Generate a greeting", 50)
    if wanted:
        return ask(wanted)
    return "done"


@mcp.prompt()
async def test_input_required_result_prompt(ctx: Context) -> str | InputRequiredResult:
    """A prompt that asks its user first."""
    context = accepted(answers(ctx).get("user_context"), "context")
    if context is None:
        return ask({"user_context": form("What context should the prompt use?", "context")})
    return f"Use this context: {context}"


if __name__ == "__main__":
    if sys.argv[1] == "--stdio":
        mcp.run(transport="stdio")
    else:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
