"""LLM topic labels: the prompts, the label cleaner and the model backends behind one interface."""
