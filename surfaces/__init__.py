"""The operator's in-process surfaces around the actor core: the Rich live console and the REPL server.

They read and move state only through the same asks and messages as everyone else. Their command-line
counterparts (attaching to the REPL, `send`, drills, validate) are in `cli`.
"""
