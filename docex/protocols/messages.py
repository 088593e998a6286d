"""What travels on the broker: the AMQP `type` of each message and the headers docex sets.

    document           an envelope (agent -> hub -> recipient agents, or across a link)
    receipt            a recipient's signed receipt (recipient -> hub -> sender)
    notice             a hub's signed notice to a sender (rejected, paper route, expired...)
    directory          a hub's signed directory snapshot (hub -> agents, hub <-> hub)
    directory_delta    a hub's signed change of its directory from version N to M (hub -> agents)
    directory_request  an agent asks for the current snapshot (agent -> hub); with the
                       `docex-directory-version` header it holds, none is sent if that is current
    heartbeat          an agent is alive (agent -> hub); authenticated by the AMQP login
    seal               a registered seal impression for the unit (hub -> that agent)
    recall             the sender's signed recall (撤销) of a document (sender -> hub -> recipients)
    checkpoint         a hub's signed, timestamped audit checkpoint (child hub -> parent hub)
    chunk              one chunk of a large document's big file (docex.protocols.chunks), after its
                       envelope: sender -> hub -> recipients, across links like documents
"""

from __future__ import annotations

DOCUMENT = "document"
RECEIPT = "receipt"
NOTICE = "notice"
DIRECTORY = "directory"
DIRECTORY_DELTA = "directory_delta"
DIRECTORY_REQUEST = "directory_request"
HEARTBEAT = "heartbeat"
SEAL = "seal"
RECALL = "recall"
CHECKPOINT = "checkpoint"
CHUNK = "chunk"

TYPES = frozenset({DOCUMENT, RECEIPT, NOTICE, DIRECTORY, DIRECTORY_DELTA, DIRECTORY_REQUEST, HEARTBEAT, SEAL, RECALL,
                   CHECKPOINT, CHUNK})

# AMQP headers
H_RECIPIENT = "docex-recipient"  # the address a delivered copy is for
H_REPLAY_OF = "docex-replay-of"  # a dead letter the hub's login replays into its ingress: the unit it came from
H_HOPS = "docex-hops"  # hubs an envelope crossed, to stop routing loops
H_CHUNK_OF = "docex-chunk-of"  # a chunk's document (message id)
H_CHUNK_INDEX = "docex-chunk-index"  # and its index
H_DIRECTORY_VERSION = "docex-directory-version"  # on a directory request: the version the agent holds
MAX_HOPS = 8


def receipt_key(message_id: str, recipient: str, event: str) -> str:
    """The message id of a receipt on the wire: one per (document, recipient, event)."""
    return f"{message_id}|{recipient}|{event}"


def chunk_key(message_id: str, index: int) -> str:
    """The message id of a chunk on the wire: one per (document, index)."""
    return f"{message_id}|chunk|{index}"


def notice_key(message_id: str, event: str, extra: str = "") -> str:
    return f"{message_id}|notice|{event}|{extra}"
