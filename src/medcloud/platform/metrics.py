"""Prometheus metrics, one registry per process (so tests can build several apps side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric medcloud exposes on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "endpoint", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ["method", "endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.active_devices = Gauge(
            "active_devices_total",
            "Devices that reported within the active window.",
            registry=r,
        )
        self.devices_by_status = Gauge(
            "devices_by_status",
            "Registered devices by status (online, offline, unknown, decommissioned).",
            ["status"],
            registry=r,
        )
        self.firmware_updates_in_progress = Gauge(
            "firmware_updates_in_progress",
            "Firmware updates offered to devices and not yet finished.",
            registry=r,
        )
        self.readings_ingested = Counter(
            "readings_ingested_total", "Readings stored.", ["transport"], registry=r
        )
        self.readings_rejected = Counter(
            "readings_rejected_total",
            "Readings refused, by reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.hl7_messages = Counter(
            "hl7_messages_total",
            "HL7 v2 messages answered, by type (MSH-9) and acknowledgement code.",
            ["type", "ack"],
            registry=r,
        )
        self.readings_clock_drift = Counter(
            "readings_clock_drift_total",
            "Readings stored with a timestamp far behind their receipt (device clock drift).",
            ["transport"],
            registry=r,
        )
        self.ingest_uploads = Counter(
            "ingest_uploads_total",
            "Uploaded readings files processed, by outcome (stored, quarantined, rejected, …).",
            ["outcome"],
            registry=r,
        )
        self.ingest_writer_pending = Gauge(
            "ingest_writer_pending_rows",
            "Readings waiting for the micro-batch writer to commit them.",
            registry=r,
        )
        self.ingest_flush_seconds = Histogram(
            "ingest_flush_duration_seconds",
            "Time to commit one micro-batch of readings.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.mqtt_messages = Counter(
            "mqtt_messages_total",
            "Telemetry messages the MQTT subscriber took, by outcome (stored, refused, "
            "unknown_device, retried, abandoned).",
            ["outcome"],
            registry=r,
        )
        self.mqtt_in_flight = Gauge(
            "mqtt_messages_in_flight",
            "Telemetry messages received from the broker and not yet acknowledged to it.",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "mqtt_subscriber_connected",
            "1 while the MQTT subscriber is connected to the broker and subscribed.",
            registry=r,
        )
        self.alerts_raised = Counter(
            "alerts_raised_total", "Alarms raised, by alarm condition.", ["rule"], registry=r
        )
        self.alarm_latency = Histogram(
            "alarm_latency_seconds",
            "From a reading's acceptance to the alarm it raised being stored.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.alarms_active = Gauge(
            "alarms_active",
            "Open (active or acknowledged) alarms, by priority.",
            ["priority"],
            registry=r,
        )
        self.notifications_sent = Counter(
            "notifications_sent_total",
            "Delivery attempts, by channel and outcome (sent, delivered, retry, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.notification_delivery = Histogram(
            "notification_delivery_seconds",
            "From an alarm being raised to a channel accepting the message about it.",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.notification_escalations = Counter(
            "notification_escalations_total",
            "Escalation steps beyond the first, by priority.",
            ["priority"],
            registry=r,
        )
        self.events_published = Counter(
            "bus_events_published_total", "Events relayed from the outbox to the bus.", registry=r
        )
        self.outbox_pending = Gauge(
            "bus_outbox_pending", "Committed events not yet published (bus lag).", registry=r
        )
