"""The clerks' desk: the agent's local HTTP API (api.py), who may use it (auth.py), what it
shows (views.py), the printable 签收单 (slip.py) and the static desk (static/)."""
