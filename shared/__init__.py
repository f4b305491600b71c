"""Code shared by the web and the worker: settings, database models, schemas, the queue contract."""
