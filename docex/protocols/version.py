"""Protocol versioning: a receiver refuses versions it does not speak."""

PROTOCOL_VERSION = "1"
SUPPORTED_VERSIONS = frozenset({"1"})
