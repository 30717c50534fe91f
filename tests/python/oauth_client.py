"""The official MCP Python SDK's client with its OAuth support, against the gateway: the 401's
WWW-Authenticate leads to the gateway's protected-resource metadata (RFC 9728), that to the
authorization server, where it registers, authorizes (the redirect followed here, as a browser
would) and gets a token; then it lists the tools and calls one. For tests/clients/gateway_oauth.rs.

Usage: python3 oauth_client.py GATEWAY_URL
Prints one JSON line: {"tools": [...], "text": ..., "is_error": ...}
"""
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2

from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

url = sys.argv[1]
REDIRECT = "http://127.0.0.1:9/callback"


class Memory:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


redirected = {}


async def redirect_handler(authorization_url: str) -> None:
    # The user agent: the authorization server answers with a redirect carrying the code.
    async with httpx2.AsyncClient() as http:
        answer = await http.get(authorization_url, follow_redirects=False)
    location = answer.headers["location"]
    query = parse_qs(urlparse(location).query)
    redirected["code"] = query["code"][0]
    redirected["state"] = query.get("state", [None])[0]


async def callback_handler() -> AuthorizationCodeResult:
    return AuthorizationCodeResult(code=redirected["code"], state=redirected["state"])


async def main():
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="gateway-oauth-test",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=Memory(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    http = httpx2.AsyncClient(auth=auth, timeout=30)
    async with Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        tools = await client.list_tools()
        result = await client.call_tool("extract_text", {"image_url": "oauth.png"})
        text = "".join(getattr(c, "text", "") for c in result.content)
        print(json.dumps({"tools": sorted(t.name for t in tools.tools), "text": text, "is_error": bool(result.is_error)}), flush=True)


asyncio.run(main())
