"""The operator's surfaces around the actor core: the Rich live console, the REPL, IM commands, drills.

They read and move state only through the same asks and messages as everyone else.
"""
