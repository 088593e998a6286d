"""Metrics helpers (the Observer seam, Prometheus observer, status collector, /metrics
exporter), the delivery dashboard's static files, and the Prometheus/Grafana
configuration shipped for the compose stack."""
