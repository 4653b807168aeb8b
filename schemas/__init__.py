"""Message and metadata schemas: the single definition shared by the gateway,
workers, drift app, client and external producers (JSON Schema export in
``schemas/json/``, regenerated with ``rtml schemas export``)."""
