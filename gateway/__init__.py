"""The gateway's parts that are not its actor (`actors.gateway`): the MCP tools it serves (`tools`), their
argument checking (`arguments`), the bearer token (`auth`), and where it listens (`address`)."""
from .address import URL_FILE, read_gateway_url
from .auth import BearerAuth, MissingToken, TOKEN_FILE, gateway_token
from .tools import GatewayTools, PERIODS

__all__ = ["BearerAuth", "GatewayTools", "MissingToken", "PERIODS", "TOKEN_FILE", "URL_FILE", "gateway_token",
           "read_gateway_url"]
