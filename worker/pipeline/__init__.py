"""The topic pipeline: pure stages (embed, reduce, cluster, represent, label) and the run that chains them.

Nothing here knows of Flask, Celery or the database: arrays and lists in, arrays and dataclasses out, and a
``progress(stage, done, total)`` callback for the caller.
"""
