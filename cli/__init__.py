"""Command-line clients of a running (or about to run) supervisor, each a `python supervisor.py` subcommand:
`send` (one IM command through the gateway), `attach` (`repl`: this terminal on the REPL), `drills`
(`drill NAME`), `validate`, and `proxy` (the managed LiteLLM proxy by hand). In-process surfaces are in
`surfaces`."""
