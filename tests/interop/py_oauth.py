"""The official Python SDK client's OAuth flow against Warden's built-in authorization server:
401 → metadata discovery → dynamic registration → PKCE authorization (this script plays the
browser) → token → tools/call through Warden.
Usage: python py_oauth.py http://127.0.0.1:PORT/mcp USER PASSWORD [TOOL]
TOOL: everything__echo (the reference server's, the default) or shout (plain-server.mjs's)."""
import re
import sys
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2 as httpx
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

URL, USER, PASSWORD = sys.argv[1:4]
TOOL = sys.argv[4] if len(sys.argv) > 4 else "everything__echo"
REDIRECT = "http://127.0.0.1:9/py/callback"


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


result: dict = {}


async def browser(authorization_url: str) -> None:
    q = parse_qs(urlparse(authorization_url).query)
    assert q["code_challenge_method"] == ["S256"], q
    async with httpx.AsyncClient(follow_redirects=False) as b:
        page = await b.get(authorization_url)
        assert page.status_code == 200, page.text
        field = lambda n: re.search(f'name="{n}" value="([^"]*)"', page.text).group(1)  # noqa: E731
        cookie = page.headers["set-cookie"].split(";")[0]
        post = await b.post(
            str(page.url.join("/authorize")),
            data={"request_id": field("request_id"), "csrf": field("csrf"), "username": USER,
                  "password": PASSWORD, "decision": "approve"},
            headers={"cookie": cookie},
        )
        assert post.status_code == 303, post.status_code
        back = parse_qs(urlparse(post.headers["location"]).query)
        result.update({k: v[0] for k, v in back.items()})


async def callback() -> AuthorizationCodeResult:
    return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))


async def main() -> None:
    storage = Memory()
    provider = OAuthClientProvider(
        server_url=URL,
        client_metadata=OAuthClientMetadata(
            client_name="warden-interop-py", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"],
            response_types=["code"], token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser,
        callback_handler=callback,
    )
    async with httpx.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert storage.tokens is not None and storage.tokens.access_token
                print("ok   401 → discovery → registration → consent → token")
                args = {"text": "py authorized"} if TOOL == "shout" else {"message": "py authorized"}
                r = await session.call_tool(TOOL, args)
                assert "py authorized" in r.content[0].text.lower(), r
                print("ok   tools/call with the access token")
    print("py-oauth: 2 passed, 0 failed")


anyio.run(main)
