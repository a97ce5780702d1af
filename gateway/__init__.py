"""The gateway's parts that are not its actor (`actors.gateway`): the MCP tools it serves (`tools`), their
argument checking (`arguments`), the bearer token (`auth`), and where it listens (`address`)."""
