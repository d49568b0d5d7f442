"""What the service tells operators: Prometheus metrics, JSON logs, the audit trail."""
