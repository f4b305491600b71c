"""The ``topicq`` command line: start the service, run its parts, submit corpora."""
