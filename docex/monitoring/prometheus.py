"""The Prometheus side of the seam: an Observer that turns hooks into docex_* metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from docex.monitoring.labels import DELIVERY_STATES, BoundedLabel

# Intake runs in milliseconds; delivery waits for an agent that may be switched off
# overnight; signing for waits for a person (hours, days for 平急).
INTAKE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_BUCKETS = (
    0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
    4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0,
)  # fmt: skip
SIGN_FOR_BUCKETS = (
    60.0, 300.0, 900.0, 1800.0, 3600.0, 2 * 3600.0, 4 * 3600.0, 8 * 3600.0,
    86400.0, 2 * 86400.0, 3 * 86400.0, 7 * 86400.0,
)  # fmt: skip
SIZE_BUCKETS = tuple(float(2**n) for n in range(10, 31, 2))  # 1 KiB .. 1 GiB


class PrometheusObserver:
    """Implements docex.monitoring.observer.Observer on `registry`.

    `links` bounds the link label when the service knows its links (the bridge does);
    other label values are capped by BoundedLabel."""

    def __init__(self, registry: CollectorRegistry, links: list[str] | None = None) -> None:
        self._code = BoundedLabel("code", limit=64)
        self._state = BoundedLabel("state", allowed=DELIVERY_STATES)
        self._event = BoundedLabel("event", limit=16)
        self._link = BoundedLabel("link", allowed=links, limit=32)
        self._direction = BoundedLabel("direction", allowed=("out", "in"))

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        # hub
        self.accepted = counter("docex_documents_accepted", "Documents accepted by intake.")
        self.accepted_deliveries = counter(
            "docex_documents_recipients",
            "Recipients of accepted documents (one delivery row each).",
        )
        self.rejected = counter(
            "docex_documents_rejected", "Envelopes refused by intake, by error code.", ("code",)
        )
        self.transitions = counter(
            "docex_delivery_transitions",
            "Delivery state transitions, by the state entered.",
            ("state",),
        )
        for state in DELIVERY_STATES:  # every state visible at 0 from the start
            self.transitions.labels(state=state)
        self.receipts = counter("docex_receipts", "Receipts recorded by the hub.", ("event",))
        self.intake_seconds = Histogram(
            "docex_intake_seconds",
            "Time intake took for one accepted envelope.",
            buckets=INTAKE_BUCKETS,
            registry=registry,
        )
        self.document_bytes = Histogram(
            "docex_document_bytes",
            "Size of accepted envelopes.",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "docex_delivery_seconds",
            "Accepted by the hub until the recipient's delivered receipt.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.sign_for_seconds = Histogram(
            "docex_sign_for_seconds",
            "Delivered until signed for (签收).",
            buckets=SIGN_FOR_BUCKETS,
            registry=registry,
        )
        # agent
        self.agent_sent_total = counter("docex_agent_sent", "Documents this agent sent.")
        self.agent_received_total = counter(
            "docex_agent_received", "Documents this agent received into its inbox."
        )
        self.agent_quarantined_total = counter(
            "docex_agent_quarantined",
            "Received envelopes this agent refused and quarantined, by error code.",
            ("code",),
        )
        # link
        self.link_documents = counter(
            "docex_link_documents",
            "Envelopes moved across a link.",
            ("link", "direction"),
        )
        self.link_bytes = counter(
            "docex_link_bytes", "Bytes moved across a link.", ("link", "direction")
        )
        self.link_errors = counter(
            "docex_link_errors", "Failed moves across a link, by error code.", ("link", "code")
        )

    # --- hub ---
    def document_accepted(
        self, sender: str, recipients: int, size: int, intake_seconds: float
    ) -> None:
        # sender is deliberately not a label: per-unit figures come from the status
        # snapshot, whose unit set is bounded by the directory.
        self.accepted.inc()
        self.accepted_deliveries.inc(max(recipients, 0))
        self.document_bytes.observe(max(size, 0))
        self.intake_seconds.observe(max(intake_seconds, 0.0))

    def document_rejected(self, code: str) -> None:
        self.rejected.labels(code=self._code(code)).inc()

    def delivery_state(self, state: str) -> None:
        self.transitions.labels(state=self._state(state)).inc()

    def receipt(self, event: str) -> None:
        # receipts say "signed-for" on the wire and signed_for in the store: one series
        self.receipts.labels(event=self._event(event.replace("-", "_"))).inc()

    def delivered(self, latency_seconds: float) -> None:
        self.delivery_seconds.observe(max(latency_seconds, 0.0))

    def signed_for(self, latency_seconds: float) -> None:
        self.sign_for_seconds.observe(max(latency_seconds, 0.0))

    # --- agent ---
    def agent_sent(self) -> None:
        self.agent_sent_total.inc()

    def agent_received(self) -> None:
        self.agent_received_total.inc()

    def agent_quarantined(self, code: str) -> None:
        self.agent_quarantined_total.labels(code=self._code(code)).inc()

    # --- link ---
    def link_forwarded(self, link: str, direction: str, size: int) -> None:
        labels = {"link": self._link(link), "direction": self._direction(direction)}
        self.link_documents.labels(**labels).inc()
        self.link_bytes.labels(**labels).inc(max(size, 0))

    def link_error(self, link: str, code: str) -> None:
        self.link_errors.labels(link=self._link(link), code=self._code(code)).inc()
