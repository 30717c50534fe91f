"""An OAuth 2.1 authorization server built on the official MCP Python SDK's authorization-server
support (`create_auth_routes`: metadata, dynamic client registration, authorize, token with PKCE),
issuing RS256 JWT access tokens (PyJWT) for the resource the client names (RFC 8707), with its
keys at /jwks. For tests/clients/gateway_oauth.rs.

Test-only routes beside the standard ones: `POST /mint` signs a token with chosen claims (or a
key the JWKS does not publish, or `alg: none`), `GET /stats` says how often /jwks was fetched.

Usage: python3 oauth_server.py PORT
"""
import json
import secrets
import sys
import time

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    construct_redirect_uri,
)
from mcp.server.auth.routes import create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

port = int(sys.argv[1])
BASE = f"http://127.0.0.1:{port}"
# The issuer identifier as the SDK's metadata writes it (a URL with its path, here `/`); tokens
# carry the same string, as RFC 8414 asks.
ISSUER = str(AnyHttpUrl(BASE))
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# A key the JWKS never publishes (tokens signed with it name an unknown kid).
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwks_fetches = 0


def sign(claims: dict, kid: str = "k1", key=KEY, alg: str = "RS256") -> str:
    if alg == "none":
        return jwt.encode(claims, None, algorithm="none")
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def access_token(subject: str, resource: str | None, namespaces: list[str], ttl: int = 300) -> str:
    now = int(time.time())
    return sign(
        {
            "iss": ISSUER,
            "sub": subject,
            "aud": resource,
            "iat": now,
            "exp": now + ttl,
            "mcp_namespaces": namespaces,
            "groups": ["ocr-users"],
        }
    )


class Provider:
    """Everything in memory; every user is `alice`, granted the `default` namespace."""

    def __init__(self):
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}

    async def get_client(self, client_id):
        return self.clients.get(client_id)

    async def register_client(self, client_info):
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client, params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject="alice",
        )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client, authorization_code):
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(self, client, authorization_code) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        token = access_token("alice", authorization_code.resource, ["default"])
        return OAuthToken(access_token=token, token_type="Bearer", expires_in=300)

    async def load_refresh_token(self, client, refresh_token):
        return None

    async def exchange_refresh_token(self, client, refresh_token, scopes):
        raise NotImplementedError

    async def load_access_token(self, token: str) -> AccessToken | None:
        return None

    async def revoke_token(self, token):
        return None


async def jwks(request: Request):
    global jwks_fetches
    jwks_fetches += 1
    public = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    public.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    return JSONResponse({"keys": [public]})


async def mint(request: Request):
    """Claims as asked: `sub`, `aud`, `ttl` (seconds, negative for expired), `namespaces`,
    `kid`, `stranger` (sign with the unpublished key), `alg`, `iss`."""
    ask = await request.json()
    now = int(time.time())
    claims = {
        "iss": ask.get("iss", ISSUER),
        "sub": ask.get("sub", "bob"),
        "aud": ask["aud"],
        "iat": now,
        "exp": now + int(ask.get("ttl", 300)),
        "mcp_namespaces": ask.get("namespaces", ["default"]),
    }
    key = STRANGER if ask.get("stranger") else KEY
    token = sign(claims, kid=ask.get("kid", "k1"), key=key, alg=ask.get("alg", "RS256"))
    return JSONResponse({"token": token})


async def stats(request: Request):
    return JSONResponse({"jwks_fetches": jwks_fetches})


routes = create_auth_routes(
    Provider(),
    AnyHttpUrl(BASE),
    client_registration_options=ClientRegistrationOptions(enabled=True),
)
routes += [Route("/jwks", jwks), Route("/mint", mint, methods=["POST"]), Route("/stats", stats)]
uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")
