"""The `instseg` CLI (Typer): one module per command."""
