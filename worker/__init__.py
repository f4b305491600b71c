"""The topicq worker: model loading, the topic pipeline and the Celery task around it."""
