"""The mcpdsl language server (`mcpdsl lsp`): editor features over the compiler's front end.

`server.build_server()` makes a pygls server; `index`, `navigate`, `complete`,
`tokens` and `actions` are pure functions over a checked tree (`workspace`),
so that they can be tested without a client.
"""
