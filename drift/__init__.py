"""Drift detection over the prediction log (``rtml drift``) and its alert subscribers
(``rtml alerts tail|forward``).

Data flow::

    rtml.predictions ──> drift.ingest.LogReader (confluent-kafka, batches of records,
                         decoded and binned with numpy in one thread)
                           │ one Totals per (model, version, step) per batch
                           v
    rtml.drift.partials (keyed model|version) ──> Faust agent (drift.app)
                           │ drift.detector.Detector: step tables (changelog-backed),
                           │ window = sum of its steps, drift.evaluate, drift.alerting
                           v
    rtml.drift.alerts (DriftAlert) ──> rtml alerts tail | forward (Slack, PagerDuty)
    Redis  rtml:drift:<model>        ──> GET /api/v1/models/{name}/drift (drift.state)
    Prometheus  rtml_drift_*         ──> Alertmanager

The maths lives in :mod:`rtml_client.stats` (pure, shared with the client's
offline ``detect_drift``).

Errors: the :class:`~runtime.errors.DriftError` branch of :mod:`runtime.errors`:
DriftConfigError (window settings that cannot work, refused at start), TotalsMismatch
(totals that do not fit a layout: message skipped, counted), BadRecord (an unusable
prediction-log record: skipped, counted), DeliveryError (an alert POST failed). The first
three are also ValueErrors.
"""
